//! Property tests over the fuzzing entry points: arbitrary bytes and near-valid inputs
//! never panic, and their invariants hold. Case counts follow `PROPTEST_CASES`.

use proptest::prelude::*;
use sluice::fuzzing;

fn near_json() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"a\"",
        "\"\\u00e9\"",
        "1",
        "-1.5e300",
        "null",
        "true",
        "\n",
        " ",
        "\"x",
        "1e999",
        "\"\\ud800\"",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|p| p.concat().into_bytes())
}

fn near_yaml() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        "sources:\n",
        "transforms:\n",
        "sinks:\n",
        "  a:\n",
        "  b: { type: remap, inputs: [a], source: \".x = 1\" }\n",
        "    type: generator\n",
        "    type: console\n",
        "    inputs: [a, \"b*\", c.dropped]\n",
        "    count: 5\n",
        "  - x\n",
        "${X}",
        "${Y:-d}",
        "$$",
        "&anchor ",
        "*anchor",
        "<<: *anchor\n",
        "? ",
        "'",
        "\"",
        "\t",
        "#c\n",
        "    buffer: { max_events: 0 }\n",
        "    condition: .a == 1\n",
    ]);
    prop::collection::vec(pieces, 0..30).prop_map(|p| p.concat().into_bytes())
}

proptest! {
    #[test]
    fn webhook_bodies_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::webhook_body(&data);
    }

    #[test]
    fn near_json_webhook_bodies_never_panic(data in near_json()) {
        fuzzing::webhook_body(&data);
    }

    #[test]
    fn pipeline_files_never_panic(data in near_yaml()) {
        fuzzing::pipeline_file(&data);
    }

    #[test]
    fn arbitrary_pipeline_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
        fuzzing::pipeline_file(&data);
    }

    #[test]
    fn interpolation_positions_map_back(data in "([a-z: \\n{}$]|\\$\\{[A-Z_]{1,6}(:-[a-z]{0,3})?\\})*") {
        fuzzing::interpolation(data.as_bytes());
    }
}
