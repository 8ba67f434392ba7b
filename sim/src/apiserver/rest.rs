//! The HTTP face of [`FakeApi`]: URL parsing, query parameters, verb dispatch and JSON
//! responses, all in memory behind a tower service.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use super::selector::Selector;
use super::{
    ApiError, DEFAULT_MANAGER, DeleteOptions, Deleted, FakeApi, Key, RequestRecord, Res, Scope,
    State, meta_str,
};

/// What a URL names.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    res: Res,
    /// `None` for cluster-wide URLs (lists across namespaces, cluster-scoped objects).
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

impl Target {
    fn key(&self, name: &str) -> Key {
        Key::new(&self.res, self.ns.as_deref().unwrap_or_default(), name)
    }
}

#[derive(Debug, Default)]
struct Query {
    label_selector: Option<String>,
    field_selector: Option<String>,
    field_manager: Option<String>,
    limit: Option<usize>,
    continue_after: Option<String>,
    watch: bool,
    dry_run: bool,
    grace_period_seconds: Option<i64>,
}

impl Query {
    fn parse(query: &str) -> Result<Self, ApiError> {
        let mut q = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match percent_decode(k).as_str() {
                "labelSelector" => q.label_selector = Some(v),
                "fieldSelector" => q.field_selector = Some(v),
                "fieldManager" => q.field_manager = Some(v).filter(|m| !m.is_empty()),
                "limit" => {
                    let limit: usize = v
                        .parse()
                        .map_err(|_| ApiError::bad_request(format!("invalid limit `{v}`")))?;
                    q.limit = Some(limit).filter(|l| *l > 0);
                }
                "continue" => q.continue_after = Some(v).filter(|c| !c.is_empty()),
                "watch" => q.watch = v == "true" || v == "1",
                "dryRun" => q.dry_run = v == "All",
                "gracePeriodSeconds" => {
                    q.grace_period_seconds = Some(v.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid gracePeriodSeconds `{v}`"))
                    })?);
                }
                // `force` is accepted and ignored: this server never raises manager conflicts,
                // so there is nothing to force. Other parameters (resourceVersion,
                // timeoutSeconds, fieldValidation, ...) do not change what it answers.
                _ => {}
            }
        }
        Ok(q)
    }

    fn manager(&self) -> &str {
        self.field_manager.as_deref().unwrap_or(DEFAULT_MANAGER)
    }
}

/// `application/x-www-form-urlencoded` decoding (kube encodes query values that way).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_path(path: &str) -> Result<Target, ApiError> {
    let not_found = || {
        ApiError::from_code(
            404,
            format!("the server could not find the requested resource ({path})"),
        )
    };
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let (group_version, rest) = match segments.as_slice() {
        [api, version, rest @ ..] if api == "api" => (version.clone(), rest),
        [apis, group, version, rest @ ..] if apis == "apis" => (format!("{group}/{version}"), rest),
        _ => return Err(not_found()),
    };
    let (ns, rest) = match rest {
        [namespaces, ns, rest @ ..] if namespaces == "namespaces" && !rest.is_empty() => {
            (Some(ns.clone()), rest)
        }
        _ => (None, rest),
    };
    match rest {
        [plural, tail @ ..] if tail.len() <= 2 => Ok(Target {
            res: Res::new(group_version, plural.clone()),
            ns,
            name: tail.first().cloned(),
            sub: tail.get(1).cloned(),
        }),
        _ => Err(not_found()),
    }
}

/// A successful answer: HTTP status and JSON body.
struct Reply(StatusCode, Value);

impl FakeApi {
    pub(super) async fn serve(
        &self,
        request: http::Request<kube::client::Body>,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let reply = match body.collect().await {
            Ok(collected) => self.handle(
                &parts.method,
                &parts.uri,
                &parts.headers,
                &collected.to_bytes(),
            ),
            Err(e) => error_reply(&ApiError::bad_request(format!(
                "cannot read the request body: {e}"
            ))),
        };
        let mut response = Response::new(Full::new(Bytes::from(reply.1.to_string())));
        *response.status_mut() = reply.0;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }

    fn handle(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Reply {
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let mut st = self.state.lock();
        let result = match st.take_fault(method, uri.path()) {
            Some(code) => Err(ApiError::from_code(
                code,
                format!("injected by FakeApi::fail_next for {method} {}", uri.path()),
            )),
            None => dispatch(&mut st, method, uri, content_type.as_deref(), body),
        };
        let reply = result.unwrap_or_else(|e| error_reply(&e));
        tracing::debug!(%method, %uri, status = reply.0.as_u16(), "fake API request");
        st.record(RequestRecord {
            method: method.clone(),
            uri: uri.to_string(),
            content_type,
            status: reply.0.as_u16(),
        });
        reply
    }
}

fn error_reply(e: &ApiError) -> Reply {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Reply(code, e.status())
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn dispatch(
    st: &mut State,
    method: &Method,
    uri: &Uri,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let target = parse_path(uri.path())?;
    let query = Query::parse(uri.query().unwrap_or_default())?;
    let ok = |v: Value| Ok(Reply(StatusCode::OK, v));
    let not_allowed = || {
        Err(ApiError::from_code(
            405,
            format!("{method} is not supported on {}", uri.path()),
        ))
    };
    let scope = match target.sub.as_deref() {
        None => Scope::Main,
        Some("status") => Scope::Status,
        Some("scale") if target.res.has_scale() => {
            return scale(st, method, &target, &query, content_type, body);
        }
        Some(other) => {
            return Err(ApiError::from_code(
                404,
                format!(
                    "the server could not find the requested resource ({other} of {})",
                    target.res.qualified()
                ),
            ));
        }
    };
    let Some(name) = target.name.clone() else {
        return match *method {
            Method::GET if query.watch => Err(ApiError::from_code(
                405,
                "watch is not supported by the fake API server; poll or use FakeApi::changed",
            )),
            Method::GET => ok(list(st, &target, &query)?),
            Method::POST => {
                let obj = st.create(
                    &target.res,
                    target.ns.as_deref().unwrap_or_default(),
                    parse_body(body)?,
                    query.manager(),
                    false,
                    query.dry_run,
                )?;
                Ok(Reply(StatusCode::CREATED, obj))
            }
            _ => not_allowed(),
        };
    };
    let key = target.key(&name);
    match *method {
        Method::GET => st
            .objects
            .get(&key)
            .map(|e| Reply(StatusCode::OK, e.obj.clone()))
            .ok_or_else(|| ApiError::not_found(&target.res, &name)),
        Method::PUT => ok(st.replace(
            &key,
            scope,
            query.manager(),
            parse_body(body)?,
            query.dry_run,
        )?),
        Method::PATCH => {
            let body = parse_body(body)?;
            let manager = query.manager();
            match patch_type(content_type)? {
                PatchType::Apply => {
                    let (obj, created) = st.apply(&key, scope, manager, body, query.dry_run)?;
                    let code = if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    Ok(Reply(code, obj))
                }
                PatchType::Merge => ok(st.merge(&key, scope, manager, body, query.dry_run)?),
                PatchType::Json => ok(st.json_patch(&key, scope, manager, &body, query.dry_run)?),
            }
        }
        Method::DELETE if scope == Scope::Main => {
            let options = delete_options(&parse_body(body)?, &query)?;
            match st.delete(&key, &options)? {
                Deleted::Terminating(obj) => ok(obj),
                // The API server answers a finished pod deletion with the pod and any other
                // finished deletion with a Success status.
                Deleted::Removed(obj) if target.res.is_pods() => ok(obj),
                Deleted::Removed(obj) => ok(json!({
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": name,
                        "group": target.res.group(),
                        "kind": target.res.plural,
                        "uid": meta_str(&obj, "uid").unwrap_or_default(),
                    },
                })),
            }
        }
        _ => not_allowed(),
    }
}

enum PatchType {
    Apply,
    /// Merge and strategic merge patch (the latter approximated by the former).
    Merge,
    Json,
}

fn patch_type(content_type: Option<&str>) -> Result<PatchType, ApiError> {
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    match mime {
        "application/apply-patch+yaml" => Ok(PatchType::Apply),
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            Ok(PatchType::Merge)
        }
        "application/json-patch+json" => Ok(PatchType::Json),
        other => Err(ApiError::from_code(
            415,
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got `{other}`)"
            ),
        )),
    }
}

fn delete_options(body: &Value, query: &Query) -> Result<DeleteOptions, ApiError> {
    let grace = match body.get("gracePeriodSeconds") {
        None | Some(Value::Null) => query.grace_period_seconds,
        Some(v) => Some(v.as_i64().filter(|g| *g >= 0).ok_or_else(|| {
            ApiError::bad_request("gracePeriodSeconds must be a non-negative integer")
        })?),
    };
    let precondition = |field: &str| {
        body.get("preconditions")
            .and_then(|p| p.get(field))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let dry_run_in_body = body
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(DeleteOptions {
        grace_period_seconds: grace,
        precondition_uid: precondition("uid"),
        precondition_resource_version: precondition("resourceVersion"),
        dry_run: query.dry_run || dry_run_in_body,
    })
}

fn list(st: &State, target: &Target, query: &Query) -> Result<Value, ApiError> {
    let labels = Selector::parse(query.label_selector.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = Selector::parse_fields(query.field_selector.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
    let matching = st.list(&target.res, target.ns.as_deref(), &labels, &fields);
    // The continue token is the namespace/name of the last item sent: not a consistent
    // snapshot like the API server's, but it pages through without repeats or gaps.
    let position = |obj: &Value| {
        format!(
            "{}/{}",
            meta_str(obj, "namespace").unwrap_or_default(),
            meta_str(obj, "name").unwrap_or_default()
        )
    };
    let mut items: Vec<Value> = match &query.continue_after {
        Some(after) => matching
            .into_iter()
            .filter(|o| position(o).as_str() > after.as_str())
            .collect(),
        None => matching,
    };
    let mut metadata = json!({"resourceVersion": st.resource_version.to_string()});
    if let Some(limit) = query.limit
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        if let Some(last) = items.last() {
            metadata["continue"] = Value::from(position(last));
        }
        metadata["remainingItemCount"] = Value::from(remaining);
    }
    Ok(json!({
        "apiVersion": target.res.group_version,
        "kind": format!("{}List", st.kind_of(&target.res)),
        "metadata": metadata,
        "items": items,
    }))
}

/// The `autoscaling/v1` Scale view of an object with `spec.replicas`.
fn scale_view(obj: &Value) -> Value {
    let meta = |field: &str| {
        obj.pointer(&format!("/metadata/{field}"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    // StatefulSets and Deployments keep their selector in the spec; CRDs publish one in status.
    let selector = match obj.pointer("/status/selector").and_then(Value::as_str) {
        Some(s) => s.to_string(),
        None => obj
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
    };
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta("name"),
            "namespace": meta("namespace"),
            "uid": meta("uid"),
            "resourceVersion": meta("resourceVersion"),
            "creationTimestamp": meta("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

fn scale(
    st: &mut State,
    method: &Method,
    target: &Target,
    query: &Query,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let Some(name) = target.name.as_deref() else {
        return Err(ApiError::from_code(405, "scale needs an object name"));
    };
    let key = target.key(name);
    let current = st
        .objects
        .get(&key)
        .map(|e| scale_view(&e.obj))
        .ok_or_else(|| ApiError::not_found(&target.res, name))?;
    let wanted = match *method {
        Method::GET => return Ok(Reply(StatusCode::OK, current)),
        Method::PUT => parse_body(body)?,
        Method::PATCH => {
            let patch = parse_body(body)?;
            match patch_type(content_type)? {
                // Only spec.replicas matters here, so apply needs no ownership bookkeeping.
                PatchType::Apply | PatchType::Merge => {
                    let mut view = current.clone();
                    super::json::merge_patch(&mut view, &patch);
                    view
                }
                PatchType::Json => super::json::json_patch(&current, &patch)?,
            }
        }
        _ => {
            return Err(ApiError::from_code(
                405,
                format!("{method} is not supported on scale"),
            ));
        }
    };
    let replicas = wanted
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::invalid("spec.replicas must be a non-negative integer"))?;
    if let Some(rv) = meta_str(&wanted, "resourceVersion")
        && meta_str(&current, "resourceVersion") != Some(rv)
    {
        return Err(ApiError::stale(&target.res, name));
    }
    let obj = st.merge(
        &key,
        Scope::Main,
        query.manager(),
        json!({"spec": {"replicas": replicas}}),
        query.dry_run,
    )?;
    Ok(Reply(StatusCode::OK, scale_view(&obj)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_resource_namespace_object_and_subresource() {
        let t = parse_path("/apis/apps/v1/namespaces/ns/statefulsets/web/scale").unwrap();
        assert_eq!(
            t,
            Target {
                res: Res::stateful_sets(),
                ns: Some("ns".into()),
                name: Some("web".into()),
                sub: Some("scale".into()),
            }
        );
        let t = parse_path("/api/v1/pods").unwrap();
        assert_eq!((t.res, t.ns, t.name), (Res::pods(), None, None));
        let t = parse_path("/api/v1/namespaces/ns/configmaps").unwrap();
        assert_eq!((t.ns.as_deref(), t.name), (Some("ns"), None));
        // `namespaces` itself is a cluster-scoped resource.
        let t = parse_path("/api/v1/namespaces/ns").unwrap();
        assert_eq!(
            (t.res.plural.as_str(), t.name.as_deref()),
            ("namespaces", Some("ns"))
        );
        assert!(parse_path("/healthz").is_err());
        assert!(parse_path("/api/v1").is_err());
        assert!(parse_path("/api/v1/namespaces/ns/pods/a/b/c").is_err());
    }

    #[test]
    fn queries_are_form_decoded() {
        let q = Query::parse(
            "labelSelector=app%3Dx%2Ctier+in+%28a%2Cb%29&fieldManager=op&force=true&limit=2&watch=true&bad%",
        )
        .unwrap();
        assert_eq!(q.label_selector.as_deref(), Some("app=x,tier in (a,b)"));
        assert_eq!(q.manager(), "op");
        assert_eq!(q.limit, Some(2));
        assert!(q.watch);
        assert!(Query::parse("limit=x").is_err());
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
