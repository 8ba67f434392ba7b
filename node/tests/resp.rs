//! The Redis protocol front with real clients: the `redis` crate and redis-cli against a
//! 3-node loopback cluster (replication factor 2), so most keys are forwarded, replicated or
//! both; and the bounds a hostile client meets, over raw TCP.

mod support;

use redis::{Commands, Connection, RedisResult};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

/// A started cluster of `n` nodes with a RESP address each.
struct RespCluster {
    c: Cluster,
    resp: Vec<String>,
}

async fn resp_cluster(name: &str, n: usize, extra: &[&str]) -> RespCluster {
    let mut c = Cluster::new(name, n);
    let members: Vec<usize> = (0..n).collect();
    c.ring = c.fresh_ring(&members, 2.min(n as u32), 1);
    c.write_ring_file();
    let resp: Vec<String> = (0..n)
        .map(|i| format!("127.0.0.{}:{}", i + 2, free_port()))
        .collect();
    for (i, addr) in resp.iter().enumerate() {
        let mut flags = vec!["--resp-listen", addr.as_str()];
        flags.extend_from_slice(extra);
        c.start(i, &flags);
    }
    for i in 0..n {
        c.wait_ready(i).await;
    }
    RespCluster { c, resp }
}

impl RespCluster {
    fn conn(&self, i: usize) -> Connection {
        redis_conn(&self.resp[i], i)
    }
}

fn err_text<T: std::fmt::Debug>(r: RedisResult<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_serves_any_key_with_pipelines_expiry_and_multi_key_commands() {
    let rc = resp_cluster("resp-data", 3, &[]).await;
    let (mut a, mut b, mut c) = (rc.conn(0), rc.conn(1), rc.conn(2));
    blocking(move || {
        // MSET through one node, MGET through the others: 200 keys over many partitions.
        let pairs: Vec<(String, String)> = (0..200)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let () = a.mset(&pairs).unwrap();
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        for conn in [&mut b, &mut c] {
            let got: Vec<Option<String>> = conn.mget(&keys).unwrap();
            let want: Vec<Option<String>> = pairs.iter().map(|(_, v)| Some(v.clone())).collect();
            assert_eq!(got, want);
        }
        let got: Vec<Option<String>> = b.mget(&["k1", "missing", "k2"]).unwrap();
        assert_eq!(got, [Some("v1".into()), None, Some("v2".into())]);

        // A pipeline whose commands depend on each other is answered as if run one by one.
        let mut p = redis::pipe();
        for i in 0..50 {
            p.cmd("SET")
                .arg("p")
                .arg(i)
                .cmd("GET")
                .arg("p")
                .cmd("INCR")
                .arg("p");
        }
        let answers: Vec<redis::Value> = p.query(&mut c).unwrap();
        assert_eq!(answers.len(), 150);
        for i in 0..50 {
            assert_eq!(answers[3 * i], redis::Value::Okay);
            assert_eq!(
                redis::from_redis_value::<String>(answers[3 * i + 1].clone()).unwrap(),
                i.to_string()
            );
            assert_eq!(
                redis::from_redis_value::<i64>(answers[3 * i + 2].clone()).unwrap(),
                i as i64 + 1
            );
        }

        // Counters meet on the key's owner, whichever node they arrive at.
        let threads: Vec<_> = [rc.resp[0].clone(), rc.resp[1].clone(), rc.resp[2].clone()]
            .into_iter()
            .map(|addr| {
                std::thread::spawn(move || {
                    let mut conn = redis::Client::open(format!("redis://{addr}/"))
                        .unwrap()
                        .get_connection()
                        .unwrap();
                    for _ in 0..100 {
                        let _: i64 = conn.incr("counter", 1).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n: i64 = a.get("counter").unwrap();
        assert_eq!(n, 300, "an increment was lost");

        // SET EX: a TTL, then gone (polled with a deadline).
        let () = redis::cmd("SET")
            .arg("short")
            .arg("x")
            .arg("EX")
            .arg(1)
            .query(&mut a)
            .unwrap();
        let ttl: i64 = b.ttl("short").unwrap();
        assert!((0..=1).contains(&ttl), "ttl {ttl}");
        let pttl: i64 = c.pttl("short").unwrap();
        assert!((1..=1000).contains(&pttl), "pttl {pttl}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while b.get::<_, Option<String>>("short").unwrap().is_some() {
            assert!(Instant::now() < deadline, "SET EX 1 still there after 5 s");
            std::thread::sleep(Duration::from_millis(50));
        }

        // Conditional sets, GETDEL, APPEND, DEL counts, EXISTS, EXPIRE/PERSIST, TYPE.
        let set_nx = |conn: &mut Connection, v: &str| -> Option<String> {
            redis::cmd("SET")
                .arg("c1")
                .arg(v)
                .arg("NX")
                .query(conn)
                .unwrap()
        };
        assert_eq!(set_nx(&mut a, "one"), Some("OK".into()));
        assert_eq!(set_nx(&mut b, "two"), None);
        let old: Option<String> = redis::cmd("SET")
            .arg("c1")
            .arg("three")
            .arg("XX")
            .arg("GET")
            .query(&mut c)
            .unwrap();
        assert_eq!(old.as_deref(), Some("one"));
        let len: i64 = a.append("c1", "!").unwrap();
        assert_eq!(len, 6);
        let gone: Option<String> = redis::cmd("GETDEL").arg("c1").query(&mut b).unwrap();
        assert_eq!(gone.as_deref(), Some("three!"));
        let n: i64 = c.exists(&["k1", "k2", "c1", "k1"]).unwrap();
        assert_eq!(n, 3);
        let n: i64 = a.del(&["k1", "k2", "c1"]).unwrap();
        assert_eq!(n, 2);
        let n: i64 = c.exists("k1").unwrap();
        assert_eq!(n, 0, "deleted through another node");
        assert!(b.expire::<_, bool>("k3", 100).unwrap());
        assert_eq!(c.ttl::<_, i64>("k3").unwrap(), 100);
        assert!(a.persist::<_, bool>("k3").unwrap());
        assert_eq!(b.ttl::<_, i64>("k3").unwrap(), -1);
        assert_eq!(c.ttl::<_, i64>("nope").unwrap(), -2);
        let t: String = redis::cmd("TYPE").arg("k3").query(&mut a).unwrap();
        assert_eq!(t, "string");
        let t: String = redis::cmd("TYPE").arg("nope").query(&mut a).unwrap();
        assert_eq!(t, "none");
        let n: i64 = redis::cmd("DECRBY")
            .arg("counter")
            .arg(10)
            .query(&mut b)
            .unwrap();
        assert_eq!(n, 290);
    })
    .await;
    // Replication: every acknowledged key is held by two nodes.
    let items = total_items(&rc.c).await;
    assert!(
        items >= 2 * 196,
        "{items} entries over 3 nodes for ~197 keys at RF 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_form_and_nothing_stored_by_a_refused_command() {
    let rc = resp_cluster("resp-errors", 3, &["--max-value-size", "1Ki"]).await;
    let mut a = rc.conn(0);
    let addr = rc.resp[1].clone();
    blocking(move || {
        let e = err_text(redis::cmd("NOSUCHCMD").query::<()>(&mut a));
        assert!(e.contains("unknown command 'NOSUCHCMD'"), "{e}");
        let e = err_text(redis::cmd("GET").query::<()>(&mut a));
        assert!(
            e.contains("wrong number of arguments for 'get' command"),
            "{e}"
        );
        let e = err_text(
            redis::cmd("MSET")
                .arg("a")
                .arg("1")
                .arg("b")
                .query::<()>(&mut a),
        );
        assert!(
            e.contains("wrong number of arguments for 'mset' command"),
            "{e}"
        );
        let e = err_text(
            redis::cmd("SET")
                .arg("k")
                .arg("v")
                .arg("NX")
                .arg("XX")
                .query::<()>(&mut a),
        );
        assert!(e.contains("syntax error"), "{e}");
        let e = err_text(
            redis::cmd("SET")
                .arg("k")
                .arg("v")
                .arg("EX")
                .arg(0)
                .query::<()>(&mut a),
        );
        assert!(e.contains("invalid expire time in 'set' command"), "{e}");
        let () = a.set("text", "abc").unwrap();
        let e = err_text(a.incr::<_, _, i64>("text", 1));
        assert!(e.contains("value is not an integer or out of range"), "{e}");
        let e = err_text(redis::cmd("SELECT").arg(16).query::<()>(&mut a));
        assert!(e.contains("DB index is out of range"), "{e}");
        let key = "k".repeat(251);
        let e = err_text(a.set::<_, _, ()>(&key, "v"));
        assert!(e.contains("keys are 1 to 250 bytes"), "{e}");

        // A value over maxValueSize: refused, nothing stored, the connection still serves.
        let e = err_text(a.set::<_, _, ()>("big", vec![b'x'; 2048]));
        assert!(e.contains("larger than maxValueSize"), "{e}");
        let e = err_text(a.append::<_, _, i64>("text", vec![b'y'; 1022]));
        assert!(e.contains("exceeds maximum allowed size"), "{e}");
        let got: Option<String> = a.get("big").unwrap();
        assert_eq!(got, None);
        let got: String = a.get("text").unwrap();
        assert_eq!(got, "abc");

        // Raw TCP: an oversized bulk streamed in is skipped as it arrives; the next command runs.
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$8000000\r\n")
            .unwrap();
        let chunk = vec![b'z'; 1 << 20];
        let mut left = 8_000_000usize;
        while left > 0 {
            let n = left.min(chunk.len());
            s.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        s.write_all(b"\r\n*1\r\n$4\r\nPING\r\n").unwrap();
        let reply = read_replies(&mut s, 2);
        assert!(
            reply.starts_with("-ERR argument of 8000000 bytes is larger than maxValueSize"),
            "{reply}"
        );
        assert!(reply.ends_with("+PONG\r\n"), "{reply}");

        // RESP3 after HELLO 3: nulls are `_`.
        s.write_all(b"HELLO 3\r\nGET missing\r\n").unwrap();
        let reply = read_replies(&mut s, 1);
        assert!(reply.starts_with('%'), "{reply}");
        assert!(reply.ends_with("_\r\n"), "{reply}");

        // A malformed frame: answered, then the connection is closed.
        s.write_all(b"*1\r\n+bad\r\n").unwrap();
        let mut rest = String::new();
        let _ = s.read_to_string(&mut rest);
        assert!(
            rest.starts_with("-ERR Protocol error: expected '$'"),
            "{rest}"
        );

        // An inline command that never ends is cut off at its bound.
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&vec![b'a'; 200 << 10]);
        let mut rest = String::new();
        let _ = s.read_to_string(&mut rest);
        assert!(rest.contains("too big inline request"), "{rest}");
    })
    .await;
    // Only `text` was stored (on its two owners): no refused command left anything behind.
    assert_eq!(total_items(&rc.c).await, 2);
    let m = rc.c.get_text(0, "/metrics").await;
    assert!(m.contains("ringcache_resp_errors_total"), "{m}");
}

/// Reads until `n` complete top-level replies have arrived (simple, error, integer or bulk
/// lines, and HELLO's map), returning them as text.
fn read_replies(s: &mut TcpStream, n: usize) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 64 << 10];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if count_replies(&text) >= n {
            return text;
        }
        assert!(Instant::now() < deadline, "only {text:?} within 10 s");
        match s.read(&mut buf) {
            Ok(0) => return text,
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) => panic!("read: {e} after {text:?}"),
        }
    }
}

/// Top-level replies in `text` (enough RESP for these tests: no nested aggregates but HELLO's
/// flat map).
fn count_replies(text: &str) -> usize {
    let mut lines = text.split_terminator("\r\n").peekable();
    let mut n = 0;
    while let Some(l) = lines.next() {
        match l.as_bytes().first() {
            Some(b'$') if l != "$-1" && lines.next().is_none() => return n,
            Some(b'%') | Some(b'*') => {
                let k: usize = l[1..].parse().unwrap_or(0);
                let items = if l.starts_with('%') { 2 * k } else { k };
                let mut seen = 0;
                while seen < items {
                    let Some(item) = lines.next() else { return n };
                    if item.starts_with('$') && item != "$-1" && lines.next().is_none() {
                        return n;
                    }
                    seen += 1;
                }
            }
            _ => {}
        }
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_required_when_the_client_token_is_set() {
    let dir = std::env::temp_dir().join(format!("ringcache-resp-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("client-token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let token_path = token_file.to_string_lossy().to_string();
    let rc = resp_cluster("resp-auth", 3, &["--auth-token-file", &token_path]).await;
    let (open, authed) = (rc.resp[0].clone(), rc.resp[2].clone());
    blocking(move || {
        let mut c = redis::Client::open(format!("redis://{open}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let e = err_text(c.get::<_, Option<String>>("k"));
        assert!(e.contains("Authentication required"), "{e}");
        let e = err_text(redis::cmd("AUTH").arg("wrong").query::<()>(&mut c));
        assert!(e.contains("WRONGPASS"), "{e}");
        let e = err_text(
            redis::cmd("AUTH")
                .arg("admin")
                .arg("s3cret")
                .query::<()>(&mut c),
        );
        assert!(e.contains("WRONGPASS"), "{e}");
        let () = redis::cmd("AUTH").arg("s3cret").query(&mut c).unwrap();
        let () = c.set("k", "v").unwrap();
        // The password in the URL: the client sends AUTH itself; the key was written via node 0
        // and is forwarded with the internal token, not the client's.
        let mut d = redis::Client::open(format!("redis://:s3cret@{authed}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let v: String = d.get("k").unwrap();
        assert_eq!(v, "v");
        // HELLO 3 with AUTH in one step.
        let mut s = TcpStream::connect(&open).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET k\r\nHELLO 3 AUTH default s3cret\r\nGET k\r\n")
            .unwrap();
        let r = read_replies(&mut s, 3);
        assert!(r.starts_with("-NOAUTH"), "{r}");
        assert!(r.ends_with("$1\r\nv\r\n"), "{r}");
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_scripted() {
    if std::process::Command::new("redis-cli")
        .arg("--version")
        .output()
        .is_err()
    {
        // CI installs redis-tools and sets this, so there the test cannot skip.
        assert!(
            std::env::var_os("RINGCACHE_REQUIRE_REDIS_CLI").is_none(),
            "redis-cli is not installed (apt-get install redis-tools)"
        );
        eprintln!("skipped: redis-cli not installed (apt-get install redis-tools)");
        return;
    }
    let rc = resp_cluster("resp-cli", 3, &[]).await;
    let (host, port) = rc.resp[1].rsplit_once(':').unwrap();
    let (host, port) = (host.to_string(), port.to_string());
    let out = blocking(move || {
        let mut child = std::process::Command::new("redis-cli")
            .args(["-h", &host, "-p", &port])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let script = "PING\nSET greeting hello EX 60\nGET greeting\nTTL greeting\nMSET a 1 b 2 c 3\nMGET a b c\nINCRBY a 41\nDEL a b\nEXISTS a b c\nDBSIZE\nGET\n";
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..11],
        [
            "PONG", "OK", "hello", "60", "OK", "1", "2", "3", "42", "2", "1"
        ],
        "{text}"
    );
    let dbsize: u64 = lines[11].parse().unwrap_or_else(|_| panic!("{text}"));
    assert_eq!(
        dbsize, 2,
        "the cluster holds greeting and c, each counted once: {text}"
    );
    assert!(
        lines[12].contains("wrong number of arguments for 'get' command"),
        "{text}"
    );
}

/// A key node `i` neither owns nor serves, so that its commands there are forwarded.
fn remote_key(rc: &RespCluster, i: u32, prefix: &str) -> String {
    (0..)
        .map(|n| format!("{prefix}{n}"))
        .find(|k| {
            let p = ringcache_ring::partition_of(k.as_bytes(), rc.c.ring.partitions);
            !rc.c.ring.read_owners(p).contains(&i)
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_is_answered_whole_and_hostile_requests_are_refused() {
    let rc = resp_cluster("resp-edges", 3, &[]).await;
    let far = remote_key(&rc, 0, "far");
    let far2 = remote_key(&rc, 0, &format!("{far}-"));
    let (addr, mut b) = (rc.resp[0].clone(), rc.conn(1));
    blocking(move || {
        // Forwarded and replicated commands, then the client closes its side at once: every
        // answer still arrives, in order, before the node closes.
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let script = format!(
            "GET {far}\r\nHELLO 3\r\nSET {far} v1\r\nGET {far}\r\nSET {far2} v2\r\nINCR n\r\nGET {far2}\r\n"
        );
        s.write_all(script.as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).unwrap();
        // The GET before HELLO 3 is answered in RESP2 (`$-1`), the rest in RESP3.
        assert!(all.starts_with("$-1\r\n%7\r\n"), "{all}");
        assert!(
            all.ends_with("+OK\r\n$2\r\nv1\r\n+OK\r\n:1\r\n$2\r\nv2\r\n"),
            "{all}"
        );

        // MSET naming a key twice keeps the last value.
        let () = redis::cmd("MSET")
            .arg(&far)
            .arg("first")
            .arg(&far)
            .arg("last")
            .query(&mut b)
            .unwrap();
        let v: String = b.get(&far).unwrap();
        assert_eq!(v, "last");

        // Integer arguments as strictly as Redis reads them.
        for bad in ["+5", "05", " 5", "5.0"] {
            let e = err_text(redis::cmd("INCRBY").arg("n").arg(bad).query::<i64>(&mut b));
            assert!(e.contains("not an integer"), "{bad:?}: {e}");
        }

        // A command naming more keys than allowed is refused whole.
        let mut mget = redis::cmd("MGET");
        for i in 0..100_001 {
            mget.arg(format!("k{i}"));
        }
        let e = err_text(mget.query::<Vec<Option<String>>>(&mut b));
        assert!(e.contains("at most 100000 keys"), "{e}");
        let n: i64 = b.incr("n", 1).unwrap();
        assert_eq!(n, 2, "the connection still serves");

        // A browser posting to the RESP port: closed without an answer, nothing run.
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: localhost:6379\r\n\r\nSET posted 1\r\n")
            .unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        let posted: Option<String> = b.get("posted").unwrap();
        assert_eq!(posted, None);
    })
    .await;
}

/// What clients read before anything else: redis-py's test suite refuses to start without
/// `arch_bits` and `cluster_enabled`, and rate limiters take the server's clock from `TIME`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_and_the_info_fields_clients_read_first() {
    let rc = resp_cluster("resp-info", 1, &[]).await;
    let mut c = rc.conn(0);
    blocking(move || {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut c).unwrap();
        let after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            (before..=after).contains(&secs),
            "{before} <= {secs} <= {after}"
        );
        assert!(micros < 1_000_000, "microseconds {micros}");
        assert!(err_text(redis::cmd("TIME").arg("x").query::<()>(&mut c)).contains("wrong number"));

        let all: String = redis::cmd("INFO").query(&mut c).unwrap();
        let field = |text: &str, name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::to_string))
        };
        assert_eq!(field(&all, "arch_bits"), Some(usize::BITS.to_string()));
        assert_eq!(field(&all, "cluster_enabled").as_deref(), Some("0"));
        assert_eq!(field(&all, "os").as_deref(), Some(std::env::consts::OS));
        let cluster: String = redis::cmd("INFO").arg("cluster").query(&mut c).unwrap();
        assert!(cluster.starts_with("# Cluster"), "{cluster}");
        assert_eq!(
            field(&cluster, "arch_bits"),
            None,
            "only the section asked for"
        );
        let cfg: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory*")
            .arg("DATABASES")
            .query(&mut c)
            .unwrap();
        assert_eq!(
            cfg.get("maxmemory-policy").map(String::as_str),
            Some("allkeys-lru")
        );
        assert_eq!(cfg.get("maxmemory").map(String::as_str), Some("268435456"));
        assert_eq!(cfg.get("databases").map(String::as_str), Some("16"));
        assert_eq!(cfg.len(), 3, "{cfg:?}");
        let e = err_text(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("timeout")
                .arg("1")
                .query::<()>(&mut c),
        );
        assert!(e.contains("configured by its flags"), "{e}");
    })
    .await;
}
