//! Feeds arbitrary bytes to every image JSON parser and validator: none may panic, and
//! whatever parses and validates must survive platform selection and a JSON round trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_layers::spec::{self, ImageIndex, Platform};

fuzz_target!(|data: &[u8]| {
    let manifest = spec::parse_manifest(data, "manifest");
    let config = spec::parse_config(data, "config");
    if let (Ok(m), Ok(c)) = (&manifest, &config) {
        let _ = spec::validate_image(m, c);
    }
    if let Ok(m) = &manifest {
        let again = spec::to_json(m).expect("a parsed manifest encodes");
        let back = spec::parse_manifest(&again, "manifest").expect("a valid manifest round-trips");
        assert_eq!(&back, m);
        for layer in &m.layers {
            spec::layer_compression(&layer.media_type)
                .expect("validated layers have a compression");
        }
    }
    if let Ok(c) = &config {
        let again = spec::to_json(c).expect("a parsed config encodes");
        let back = spec::parse_config(&again, "config").expect("a valid config round-trips");
        assert_eq!(&back, c);
    }
    if let Ok(index) = spec::parse_index(data, "index") {
        let _ = index.select(&Platform::host());
        let _ = index.select(&Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into()),
        });
    }
    if let Ok(images) = spec::parse_docker_manifest(data, "manifest.json") {
        assert!(!images.is_empty());
    }
    // The typed parse without validation must not panic either.
    let _ = spec::parse_json::<ImageIndex>(data, "index");
});
