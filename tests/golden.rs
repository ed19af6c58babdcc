//! Golden tests: real photos, the ImageNet label the int8 model must rank in its top 5.
//! The photos and their sources are listed in tests/fixtures/SOURCES.md.

mod common;

use pinsight::decode::load_rgb;
use pinsight::scores::top_k;

#[test]
fn real_photos_get_their_labels_in_the_top_5() {
    let classifier = common::imagenet_classifier();
    let manifest =
        std::fs::read_to_string(common::repo().join("tests/fixtures/golden.tsv")).unwrap();
    let mut misses = Vec::new();
    let mut checked = 0;
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (photo, expected) = line.split_once('\t').expect("golden.tsv: <path>\\t<label>");
        assert!(
            classifier.labels().iter().any(|l| l == expected),
            "{expected:?} is no ImageNet label"
        );
        let image = load_rgb(&common::repo().join(photo)).unwrap();
        let top = top_k(
            &classifier.classify(&image).unwrap().probabilities,
            classifier.labels(),
            5,
        );
        let rank = top.iter().position(|guess| guess.label == expected);
        println!(
            "{photo}: {expected:?} at rank {rank:?}, top-1 {:?} {:.3}",
            top[0].label, top[0].score
        );
        if rank.is_none() {
            misses.push(format!("{photo}: expected {expected:?}, got {top:?}"));
        }
        checked += 1;
    }
    assert!(checked >= 8, "golden.tsv lists {checked} photos");
    assert!(misses.is_empty(), "{}", misses.join("\n"));
}

#[test]
fn probabilities_are_a_distribution() {
    let classifier = common::imagenet_classifier();
    let image = load_rgb(&common::repo().join("samples/coffee.png")).unwrap();
    let probabilities = classifier.classify(&image).unwrap().probabilities;
    assert_eq!(probabilities.len(), 1000);
    assert!(probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
    assert!((probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4);
}
