//! Document operations the fake API server needs: RFC 7386 merge patch, RFC 6902 JSON patch,
//! and field paths (the unit of server-side-apply ownership here).

use serde_json::{Map, Value};

use super::ApiError;

/// A path of map keys from the object root, e.g. `["spec", "replicas"]`. Lists are never
/// entered: a list is one atomic leaf.
pub(super) type FieldPath = Vec<String>;

/// RFC 7386 JSON merge patch: maps merge recursively, `null` deletes, everything else
/// (lists included) replaces. Also the merge step of server-side apply here.
pub(super) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Every leaf path of `value`: scalars, lists and empty maps. `null`s are not leaves (they
/// mean "absent" in every patch format handled here).
pub(super) fn leaves(value: &Value) -> Vec<FieldPath> {
    fn walk(value: &Value, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
        match value {
            Value::Null => {}
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    prefix.push(key.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            _ if !prefix.is_empty() => out.push(prefix.clone()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

pub(super) fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_object()?.get(key))
        .filter(|v| !v.is_null())
}

fn lookup_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_object_mut()?.get_mut(key))
}

/// Removes the field at `path`, then the maps left empty above it, stopping below the top
/// level (`spec`, `metadata` stay) and at any map `keep` says is itself owned.
pub(super) fn remove_pruning(value: &mut Value, path: &[String], keep: impl Fn(&[String]) -> bool) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    if let Some(Value::Object(map)) = lookup_mut(value, parent) {
        map.remove(last);
    }
    let mut parent = parent;
    while parent.len() >= 2 {
        let empty = matches!(lookup(value, parent), Some(Value::Object(m)) if m.is_empty());
        if !empty || keep(parent) {
            break;
        }
        let Some((last, grandparent)) = parent.split_last() else {
            break;
        };
        if let Some(Value::Object(map)) = lookup_mut(value, grandparent) {
            map.remove(last);
        }
        parent = grandparent;
    }
}

/// Sets `key` of an object to `value`, or removes it when `value` is `None`.
pub(super) fn set_or_remove(target: &mut Value, key: &str, value: Option<Value>) {
    if let Value::Object(map) = target {
        match value {
            Some(v) => {
                map.insert(key.to_string(), v);
            }
            None => {
                map.remove(key);
            }
        }
    }
}

/// RFC 6902 JSON patch (add, remove, replace, move, copy, test). A malformed patch is a
/// BadRequest; a patch that does not fit the document is Invalid (422), as in the API server.
pub(super) fn json_patch(doc: &Value, ops: &Value) -> Result<Value, ApiError> {
    let Some(ops) = ops.as_array() else {
        return Err(ApiError::bad_request("a JSON patch must be a JSON array"));
    };
    let mut doc = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        let field = |name: &str| -> Result<&str, ApiError> {
            op.get(name).and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad_request(format!("JSON patch operation {i} has no string `{name}`"))
            })
        };
        let value = || -> Result<Value, ApiError> {
            op.get("value").cloned().ok_or_else(|| {
                ApiError::bad_request(format!("JSON patch operation {i} has no `value`"))
            })
        };
        let path = parse_pointer(field("path")?)?;
        match field("op")? {
            "add" => add(&mut doc, &path, value()?)?,
            "remove" => {
                remove(&mut doc, &path)?;
            }
            "replace" => {
                let slot = pointer_mut(&mut doc, &path).ok_or_else(|| missing(&path))?;
                *slot = value()?;
            }
            "move" => {
                let from = parse_pointer(field("from")?)?;
                let moved = remove(&mut doc, &from)?;
                add(&mut doc, &path, moved)?;
            }
            "copy" => {
                let from = parse_pointer(field("from")?)?;
                let copied = pointer(&doc, &from)
                    .cloned()
                    .ok_or_else(|| missing(&from))?;
                add(&mut doc, &path, copied)?;
            }
            "test" => {
                if pointer(&doc, &path) != Some(&value()?) {
                    return Err(ApiError::invalid(format!(
                        "JSON patch test failed at /{}",
                        path.join("/")
                    )));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unsupported JSON patch operation `{other}`"
                )));
            }
        }
    }
    Ok(doc)
}

fn parse_pointer(pointer: &str) -> Result<Vec<String>, ApiError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(ApiError::bad_request(format!(
            "JSON pointer `{pointer}` does not start with /"
        )));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn missing(path: &[String]) -> ApiError {
    ApiError::invalid(format!("JSON patch: no value at /{}", path.join("/")))
}

fn index(token: &str, len: usize, allow_end: bool) -> Option<usize> {
    if allow_end && token == "-" {
        return Some(len);
    }
    let i: usize = token.parse().ok()?;
    (i < len || (allow_end && i == len)).then_some(i)
}

fn pointer<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, token| match v {
        Value::Object(m) => m.get(token),
        Value::Array(a) => a.get(index(token, a.len(), false)?),
        _ => None,
    })
}

fn pointer_mut<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |v, token| match v {
        Value::Object(m) => m.get_mut(token),
        Value::Array(a) => {
            let i = index(token, a.len(), false)?;
            a.get_mut(i)
        }
        _ => None,
    })
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), ApiError> {
    let Some((last, parent)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    match pointer_mut(doc, parent) {
        Some(Value::Object(m)) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let i = index(last, a.len(), true).ok_or_else(|| missing(path))?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err(missing(parent)),
    }
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, ApiError> {
    let Some((last, parent)) = path.split_last() else {
        return Err(ApiError::invalid(
            "JSON patch cannot remove the whole document",
        ));
    };
    let removed = match pointer_mut(doc, parent) {
        Some(Value::Object(m)) => m.remove(last),
        Some(Value::Array(a)) => index(last, a.len(), false).map(|i| a.remove(i)),
        _ => None,
    };
    removed.ok_or_else(|| missing(path))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn p(s: &str) -> FieldPath {
        s.split('.').map(String::from).collect()
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2], "s": "x"});
        merge_patch(
            &mut doc,
            &json!({"a": {"b": null, "d": {"e": null, "f": 3}}, "l": [3], "s": {"t": 1}}),
        );
        assert_eq!(
            doc,
            json!({"a": {"c": 2, "d": {"f": 3}}, "l": [3], "s": {"t": 1}})
        );
    }

    #[test]
    fn leaves_treat_lists_and_empty_maps_as_atomic_and_skip_nulls() {
        let doc = json!({"a": {"b": [1, {"x": 1}], "c": {}, "n": null}, "d": 1});
        assert_eq!(leaves(&doc), vec![p("a.b"), p("a.c"), p("d")]);
    }

    #[test]
    fn remove_pruning_drops_emptied_maps_below_the_top_level() {
        let mut doc = json!({"spec": {"template": {"metadata": {"annotations": {"x": "1"}}}}});
        remove_pruning(&mut doc, &p("spec.template.metadata.annotations.x"), |_| {
            false
        });
        assert_eq!(doc, json!({"spec": {}}));
        let mut doc = json!({"spec": {"a": {"b": {"x": 1}}}});
        remove_pruning(&mut doc, &p("spec.a.b.x"), |path| path == p("spec.a.b"));
        assert_eq!(doc, json!({"spec": {"a": {"b": {}}}}));
    }

    #[test]
    fn json_patch_supports_the_rfc_6902_operations() {
        let doc = json!({"a": {"b": 1}, "l": [1, 2], "k/~": 0});
        let ops = json!([
            {"op": "test", "path": "/a/b", "value": 1},
            {"op": "replace", "path": "/a/b", "value": 2},
            {"op": "add", "path": "/l/-", "value": 3},
            {"op": "add", "path": "/l/0", "value": 0},
            {"op": "remove", "path": "/k~1~0"},
            {"op": "copy", "from": "/a", "path": "/c"},
            {"op": "move", "from": "/c/b", "path": "/d"},
        ]);
        assert_eq!(
            json_patch(&doc, &ops).unwrap(),
            json!({"a": {"b": 2}, "l": [0, 1, 2, 3], "c": {}, "d": 2})
        );
        let failed = json_patch(&doc, &json!([{"op": "test", "path": "/a/b", "value": 9}]));
        assert_eq!(failed.unwrap_err().code, 422);
        let missing = json_patch(&doc, &json!([{"op": "remove", "path": "/nope"}]));
        assert_eq!(missing.unwrap_err().code, 422);
        let malformed = json_patch(&doc, &json!({"op": "add"}));
        assert_eq!(malformed.unwrap_err().code, 400);
    }
}
