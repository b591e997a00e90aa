//! Any bytes as a KServe v2 infer response: scores or an error, never a panic, never a read
//! past the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else { return };
    // The first byte chooses the header length the server claims (or none), and the count.
    let header_len = (first & 1 == 1).then(|| usize::from(first >> 1) * 7);
    let n = usize::from(first % 5);
    if let Ok(scores) = mint_backend_triton_core::fuzzing::parse_response(body, header_len, n) {
        assert_eq!(scores.len(), n);
    }
});
