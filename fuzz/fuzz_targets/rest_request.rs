//! What a container sends the REST shim: the path (route and resource path), the query
//! (token type, runtime data) and an AAEL event body.
#![no_main]

use api_server_rest::fuzzing::{
    parse_event, resource_kbs_uri, runtime_data_from_query, token_type_from_query,
};
use api_server_rest::Route;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_event(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = match text.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (text, None),
    };
    let _ = Route::of_path(path);
    if let Some(rest) = path.strip_prefix("/cdh/resource/") {
        if let Some(uri) = resource_kbs_uri(rest) {
            kbs_protocol::ResourceUri::parse(&uri).expect("the shim's KBS URI parses");
        }
    }
    let _ = resource_kbs_uri(path);
    let _ = token_type_from_query(query);
    let _ = runtime_data_from_query(query);
    let _ = token_type_from_query(Some(text));
    let _ = runtime_data_from_query(Some(text));
});
