//! A TokenReview request body through `tokenreview::parse_review`, for both API versions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenreview_proxy::tokenreview::parse_review;

fuzz_target!(|data: &[u8]| {
    for version in ["authentication.k8s.io/v1", "authentication.k8s.io/v1beta1"] {
        match parse_review(data, version) {
            Ok(review) => assert!(!review.token.is_empty()),
            Err(message) => assert!(!message.is_empty()),
        }
    }
});
