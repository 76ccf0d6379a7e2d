//! The OpenAPI 3 document, generated from the same route table that builds
//! the router (see [`crate::api::routes`]), so that it cannot drift.
//!
//! Body schemas are inferred from a representative sample of each type
//! ([`Documented::sample`]) serialized through serde, and a field is marked
//! required exactly when removing it from the sample makes serde reject the
//! value: names, types and optionality all come from the real types.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::api::{Body, Route};

/// A request or response body type documented in the OpenAPI document.
pub trait Documented: Serialize + DeserializeOwned + 'static {
    /// Schema name under `components/schemas`.
    fn schema_name() -> String;
    /// A representative value with every optional field present.
    fn sample() -> Self;
    /// Enum values of string fields, by field name, when the sample cannot show them.
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        Vec::new()
    }
}

impl<T: Documented> Documented for jdos_types::api::ListResponse<T> {
    fn schema_name() -> String {
        format!("{}List", T::schema_name())
    }
    fn sample() -> Self {
        jdos_types::api::ListResponse {
            items: vec![T::sample()],
            continue_token: Some("next-page-token".into()),
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        T::enums()
    }
}

impl<T: Documented> Documented for Vec<T> {
    fn schema_name() -> String {
        format!("{}Array", T::schema_name())
    }
    fn sample() -> Self {
        vec![T::sample()]
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        T::enums()
    }
}

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index,
}

/// The JSON schema of `T`, inferred from its sample.
pub fn schema_of<T: Documented>() -> Value {
    let sample = serde_json::to_value(T::sample()).unwrap_or(Value::Null);
    let enums: BTreeMap<&str, Vec<&str>> = T::enums().into_iter().collect();
    let accepts = |v: Value| serde_json::from_value::<T>(v).is_ok();
    let mut path = Vec::new();
    infer(&sample, &sample, &mut path, &enums, &accepts)
}

fn infer(
    root: &Value,
    v: &Value,
    path: &mut Vec<Seg>,
    enums: &BTreeMap<&str, Vec<&str>>,
    accepts: &dyn Fn(Value) -> bool,
) -> Value {
    let field = path.iter().rev().find_map(|s| match s {
        Seg::Key(k) => Some(k.as_str()),
        Seg::Index => None,
    });
    match v {
        Value::Null => json!({ "nullable": true }),
        Value::Bool(_) => json!({ "type": "boolean" }),
        Value::Number(n) if n.is_u64() => json!({ "type": "integer", "minimum": 0 }),
        Value::Number(n) if n.is_i64() => json!({ "type": "integer" }),
        Value::Number(_) => json!({ "type": "number" }),
        Value::String(_) => match field.and_then(|f| enums.get(f)) {
            Some(values) => json!({ "type": "string", "enum": values }),
            None => json!({ "type": "string" }),
        },
        Value::Array(items) => {
            let item = match items.first() {
                Some(first) => {
                    path.push(Seg::Index);
                    let s = infer(root, first, path, enums, accepts);
                    path.pop();
                    s
                }
                None => json!({}),
            };
            json!({ "type": "array", "items": item })
        }
        Value::Object(map) => {
            // Free-form string maps (labels) are shown as such, not by their sample keys.
            if field == Some("labels") {
                return json!({ "type": "object", "additionalProperties": { "type": "string" } });
            }
            let mut props = Map::new();
            let mut required = Vec::new();
            for (k, child) in map {
                path.push(Seg::Key(k.clone()));
                props.insert(k.clone(), infer(root, child, path, enums, accepts));
                let mut without = root.clone();
                if remove_at(&mut without, path) && !accepts(without) {
                    required.push(Value::String(k.clone()));
                }
                path.pop();
            }
            let mut s = json!({ "type": "object", "properties": props });
            if !required.is_empty() {
                s["required"] = Value::Array(required);
            }
            s
        }
    }
}

fn remove_at(root: &mut Value, path: &[Seg]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = root;
    for seg in parents {
        cur = match (seg, cur) {
            (Seg::Key(k), Value::Object(m)) => match m.get_mut(k) {
                Some(c) => c,
                None => return false,
            },
            (Seg::Index, Value::Array(a)) => match a.first_mut() {
                Some(c) => c,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, cur) {
        (Seg::Key(k), Value::Object(m)) => m.remove(k).is_some(),
        _ => false,
    }
}

fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn body_content(body: &Body, schemas: &mut Map<String, Value>) -> Value {
    match body {
        Body::Json { name, schema } => {
            schemas.entry(name.clone()).or_insert_with(schema);
            json!({ "application/json": { "schema": { "$ref": format!("#/components/schemas/{name}") } } })
        }
        Body::Text => json!({ "text/plain": { "schema": { "type": "string" } } }),
        Body::AnyJson => json!({ "application/json": { "schema": { "type": "object" } } }),
    }
}

/// Builds the OpenAPI document of `routes`.
pub fn document(routes: &[Route]) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert("ApiError".into(), schema_of::<jdos_types::ApiError>());
    for r in routes {
        let mut params: Vec<Value> = path_params(r.path)
            .into_iter()
            .map(|p| json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        for q in r.query {
            params.push(json!({
                "name": q.name, "in": "query", "required": false,
                "description": q.description, "schema": { "type": q.ty },
            }));
        }
        let mut responses = Map::new();
        let ok = match &r.response {
            Some(b) => {
                json!({ "description": "success", "content": body_content(b, &mut schemas) })
            }
            None => json!({ "description": "success, no body" }),
        };
        responses.insert(r.status.to_string(), ok);
        responses.insert(
            "default".into(),
            json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ApiError" } } } }),
        );
        let method = r.method.as_str().to_ascii_lowercase();
        let mut op = json!({
            "operationId": operation_id(&method, r.path),
            "summary": r.summary,
            "tags": [r.tag],
            "parameters": params,
            "responses": responses,
        });
        if let Some(b) = &r.request {
            op["requestBody"] =
                json!({ "required": true, "content": body_content(b, &mut schemas) });
        }
        op["security"] = if r.auth {
            json!([{ "bearer": [] }])
        } else {
            json!([])
        };
        let entry = paths
            .entry(r.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[method.as_str()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "jdos API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The jdos elastic container cloud API. Authenticate with 'Authorization: Bearer <id>.<secret>'. Every error is an ApiError body.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
        },
    })
}

fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_string();
    for seg in path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "api" && *s != "v1")
    {
        let seg = seg.trim_start_matches('{').trim_end_matches('}');
        id.push('_');
        id.push_str(&seg.replace(['-', '.'], "_"));
    }
    id
}
