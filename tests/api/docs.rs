//! The docs stay in step with the code: every error code the service can answer is in the
//! API reference's error table (with its status) and in the OpenAPI document, and the
//! configuration reference lists exactly the variables the service reads.

use std::collections::BTreeSet;

use todo_api::error::ErrorCode;

fn doc(name: &str) -> String {
    let path = format!("{}/docs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The rows of the first Markdown table after `heading`, as cells.
fn table_after(text: &str, heading: &str) -> Vec<Vec<String>> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    text[start..]
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // the header and its rule
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The `backticked` words of a cell.
fn quoted(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_error_table_lists_every_code_with_its_status_and_nothing_else() {
    let rows = table_after(&doc("api.md"), "## Errors");
    let mut documented = BTreeSet::new();
    for row in &rows {
        for code in quoted(&row[1]) {
            documented.insert((row[0].clone(), code));
        }
    }
    let answered: BTreeSet<(String, String)> = ErrorCode::ALL
        .iter()
        .map(|code| (code.status().code.to_string(), code.as_str().to_owned()))
        .collect();
    assert_eq!(documented, answered, "docs/api.md's error table");
}

#[test]
fn the_openapi_document_names_every_error_code() {
    let document = serde_json::to_value(todo_api::openapi::document()).unwrap();
    let codes = &document["components"]["schemas"]["ErrorCode"]["enum"];
    let listed: BTreeSet<&str> = codes
        .as_array()
        .unwrap_or_else(|| panic!("no ErrorCode enum in the document: {codes}"))
        .iter()
        .filter_map(|code| code.as_str())
        .collect();
    let answered: BTreeSet<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
    assert_eq!(listed, answered);
    assert_eq!(
        document["components"]["schemas"]["ErrorBody"]["properties"]["error_code"]["$ref"],
        "#/components/schemas/ErrorCode"
    );
}

#[test]
fn the_configuration_reference_lists_exactly_the_variables_the_service_reads() {
    let rows = table_after(&doc("configuration.md"), "| variable |");
    let documented: BTreeSet<String> = rows.iter().flat_map(|row| quoted(&row[0])).collect();
    let read: BTreeSet<String> = todo_api::config::variable_names()
        .map(str::to_owned)
        .collect();
    assert_eq!(documented, read, "docs/configuration.md's variable table");
}
