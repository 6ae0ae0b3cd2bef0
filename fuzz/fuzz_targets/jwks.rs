//! A JWKS document through `keys::parse_jwks`, as the refresher loads it: with every algorithm
//! and with the default allow-list, then again with the first result as the previous set (a
//! refresh that finds the same document keeps every key's serial).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenreview_proxy::keys::{parse_jwks, Alg, KeySet};

fuzz_target!(|data: &[u8]| {
    let _ = parse_jwks(data, &[Alg::RS256, Alg::ES256], None);
    let Ok(first) = parse_jwks(data, &Alg::ALL, None) else {
        return;
    };
    assert!(!first.keys.is_empty());
    let set = KeySet::new(first.keys);
    for k in &set.keys {
        if let Some(kid) = &k.kid {
            assert!(set.by_kid(kid).is_some());
        }
        assert!(Alg::ALL.iter().any(|&a| k.verifier(a).is_some()));
    }
    let again = parse_jwks(data, &Alg::ALL, Some(&set)).expect("the same document parses again");
    assert_eq!(again.keys.len(), set.len());
    assert_eq!(again.dropped, first.dropped);
    for k in &again.keys {
        assert!(
            set.contains_serial(k.serial),
            "a refresh kept the key's serial"
        );
    }
});
