//! `manifest.json` parsing: any bytes give a parsed, cross-checked manifest or a reason, never a
//! panic; an accepted manifest is self-consistent and survives a serialization round trip.

use std::collections::BTreeMap;
use std::sync::Arc;

use ps3rt::package::Manifest;
use ps3rt::{Error, Package};

/// The fuzz target: `data` is the manifest text.
pub fn run(data: &[u8]) {
    // Through the package loader (the UTF-8 check, then the parser; no other file is present).
    let mut files = BTreeMap::new();
    files.insert("manifest.json".to_string(), Arc::<[u8]>::from(data));
    match Package::from_files("fuzz", files) {
        Ok(p) => panic!(
            "a package of only a manifest was accepted: {:?}",
            p.manifest().files.keys().collect::<Vec<_>>()
        ),
        Err(Error::Package { .. }) => {}
        Err(e) => panic!("a manifest problem must be a package error, got {e:?}"),
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((manifest, geometry)) = Manifest::parse(text) else {
        return;
    };
    // What the parser promises about an accepted manifest.
    let g = &manifest.geometry;
    assert_eq!(geometry.scales(), &g.scales[..]);
    assert_eq!(geometry.patch(), g.patch);
    assert!(g.budget >= 1 && g.budget <= geometry.total_high_patches());
    let split = geometry.budget_split(g.budget);
    assert_eq!(split, g.budget_split);
    assert_eq!(split.iter().sum::<usize>(), g.budget);
    let m = &manifest.model;
    assert_eq!(m.heads.checked_mul(m.head_dim), Some(m.width));
    assert!(m.selection_layers.iter().all(|&l| l < m.depth));
    for name in manifest.files.keys() {
        assert!(
            !name.contains('/') && !name.contains('\\') && !name.starts_with('.'),
            "file name {name:?} could leave the package directory"
        );
    }
    // Serializing and parsing again gives the same manifest.
    let once = serde_json::to_string(&manifest).expect("an accepted manifest serializes");
    let (again, geometry_again) = Manifest::parse(&once)
        .unwrap_or_else(|e| panic!("a serialized accepted manifest is refused: {e}\n{once}"));
    assert_eq!(geometry_again, geometry);
    let twice = serde_json::to_string(&again).expect("serializes");
    assert_eq!(once, twice, "the manifest changed in a round trip");
}
