//! Connection and server commands: `PING`, `ECHO`, `QUIT`, `SELECT`, `AUTH`, `HELLO`, `CLIENT`,
//! `TIME`, `CONFIG`, `INFO`.

use super::exec::*;
use super::reply;

pub fn ping(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    match args.len() {
        1 => reply::simple(x.out, "PONG"),
        2 => reply::bulk(x.out, args.get(1)),
        _ => return wrong_arity(x, "PING"),
    }
    Reply::Now
}

pub fn echo(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    reply::bulk(x.out, args.get(1));
    Reply::Now
}

pub fn quit(x: &mut Exec<'_>, _args: &Args<'_>) -> Reply {
    x.conn.quit = true;
    reply::ok(x.out);
    Reply::Now
}

pub fn select(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    match integer(args.get(1)) {
        Some(n) if (0..i64::from(x.s.databases)).contains(&n) => {
            x.conn.db = n as u8;
            reply::ok(x.out);
            Reply::Now
        }
        Some(_) => fail(x, "ERR DB index is out of range"),
        None => fail(x, NOT_INTEGER),
    }
}

/// Compares in time independent of where the first difference is.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `AUTH [user] token`: the user, when given, must be `default` (there are no others).
pub fn check_auth(x: &mut Exec<'_>, user: Option<&[u8]>, token: &[u8]) -> Result<(), Reply> {
    let Some(expected) = x.s.auth_token.as_deref() else {
        return Err(fail(
            x,
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ));
    };
    let user_ok = user.is_none_or(|u| u == b"default");
    if user_ok && same(token, expected.as_bytes()) {
        x.conn.authed = true;
        Ok(())
    } else {
        Err(fail(
            x,
            "WRONGPASS invalid username-password pair or user is disabled.",
        ))
    }
}

pub fn auth(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let r = match args.len() {
        2 => check_auth(x, None, args.get(1)),
        3 => check_auth(x, Some(args.get(1)), args.get(2)),
        _ => return syntax(x),
    };
    match r {
        Ok(()) => {
            reply::ok(x.out);
            Reply::Now
        }
        Err(r) => r,
    }
}

pub fn hello(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let mut proto = if x.conn.resp3 { 3 } else { 2 };
    let mut i = 1;
    if args.len() > 1 {
        match integer(args.get(1)) {
            Some(v @ (2 | 3)) => proto = v,
            Some(_) => return fail(x, "NOPROTO unsupported protocol version"),
            None => return fail(x, "ERR Protocol version is not an integer or out of range"),
        }
        i = 2;
    }
    while i < args.len() {
        let opt = args.get(i).to_ascii_uppercase();
        match opt.as_slice() {
            b"AUTH" if i + 2 < args.len() => {
                if let Err(r) = check_auth(x, Some(args.get(i + 1)), args.get(i + 2)) {
                    return r;
                }
                i += 3;
            }
            b"SETNAME" if i + 1 < args.len() => {
                x.conn.name = Some(args.text(i + 1));
                i += 2;
            }
            _ => return syntax(x),
        }
    }
    if !x.conn.authed {
        return fail(
            x,
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        );
    }
    x.conn.resp3 = proto == 3;
    let out = &mut *x.out;
    reply::map(out, 7, x.conn.resp3);
    reply::bulk(out, b"server");
    reply::bulk(out, b"ringcache");
    reply::bulk(out, b"version");
    reply::bulk(out, env!("CARGO_PKG_VERSION").as_bytes());
    reply::bulk(out, b"proto");
    reply::int(out, proto);
    reply::bulk(out, b"id");
    reply::int(out, x.conn.id as i64);
    reply::bulk(out, b"mode");
    reply::bulk(out, b"standalone");
    reply::bulk(out, b"role");
    reply::bulk(out, b"master");
    reply::bulk(out, b"modules");
    reply::array(out, 0);
    Reply::Now
}

pub fn client(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let sub = args.get(1).to_ascii_uppercase();
    match (sub.as_slice(), args.len()) {
        (b"SETNAME", 3) => {
            x.conn.name = Some(args.text(2));
            reply::ok(x.out);
        }
        (b"GETNAME", 2) => match &x.conn.name {
            Some(n) => reply::bulk(x.out, n.as_bytes()),
            None => reply::null(x.out, x.conn.resp3),
        },
        (b"SETINFO", 4) => reply::ok(x.out),
        (b"ID", 2) => reply::int(x.out, x.conn.id as i64),
        (b"SETNAME" | b"GETNAME" | b"SETINFO" | b"ID", _) => {
            return fail(
                x,
                &format!(
                    "ERR wrong number of arguments for 'client|{}' command",
                    args.text(1).to_ascii_lowercase()
                ),
            );
        }
        _ => {
            return fail(
                x,
                &format!(
                    "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                    args.text(1)
                ),
            );
        }
    }
    Reply::Now
}

/// `TIME`: this node's clock, seconds and microseconds (what clients use to compute
/// `EXPIREAT` times and rate windows).
pub fn time(x: &mut Exec<'_>, _args: &Args<'_>) -> Reply {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs().to_string();
    let micros = now.subsec_micros().to_string();
    reply::array(x.out, 2);
    reply::bulk(x.out, secs.as_bytes());
    reply::bulk(x.out, micros.as_bytes());
    Reply::Now
}

/// `CONFIG GET pattern …` (a map of the matching settings); `SET`, `REWRITE` and `RESETSTAT`
/// are refused: the node is configured by its flags.
pub fn config(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let sub = args.get(1).to_ascii_uppercase();
    match sub.as_slice() {
        b"GET" if args.len() > 2 => {
            let found = super::config::get(x.s, (2..args.len()).map(|i| args.get(i)));
            reply::map(x.out, found.len(), x.conn.resp3);
            for (k, v) in found {
                reply::bulk(x.out, k.as_bytes());
                reply::bulk(x.out, v.as_bytes());
            }
            Reply::Now
        }
        b"GET" => wrong_arity(x, "CONFIG|GET"),
        b"SET" | b"REWRITE" | b"RESETSTAT" => fail(
            x,
            &format!(
                "ERR CONFIG {} is not supported: ringcache is configured by its flags (or the CacheCluster), see its --help",
                args.text(1).to_ascii_uppercase()
            ),
        ),
        _ => fail(
            x,
            &format!(
                "ERR unknown subcommand '{}'. Try CONFIG HELP.",
                args.text(1)
            ),
        ),
    }
}

pub fn info(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let wanted: Vec<String> = (1..args.len())
        .map(|i| args.text(i).to_ascii_lowercase())
        .collect();
    let text = super::info::render(x.s, &wanted);
    reply::text(x.out, &text, x.conn.resp3);
    Reply::Now
}
