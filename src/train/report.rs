//! An evaluation report: accuracy, per-class precision/recall/F1, and the confusion matrix as
//! text, as JSON and as a PNG heat map with the class names.
//!
//! The JSON holds the matrix as the cells that hold photos (at most one a photo, whatever the
//! number of classes). The picture and the text show at most
//! `MAX_SHOWN_CLASSES` (40) classes of it: a head with 1000 classes would draw a picture of
//! 36164 × 36280 pixels (4 GB of memory) and print lines 4000 characters long. Above that many,
//! they show the classes that have photos or predictions, and when those are still too many
//! the most confused of them; the report says so (`shown_classes` and `shown_note` in the JSON,
//! a line in the text).
//!
//! Both files say that pinsight wrote them (the JSON's `"pinsight"` field, the PNG's `Software`
//! text), and `eval` replaces no file that does not ([`check_report_paths`]).

use std::fmt::Write as _;
use std::path::Path;

use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::mono_font::ascii::FONT_6X10;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Alignment, Baseline, Text, TextStyleBuilder};
use image::RgbImage;
use serde::Serialize;

use super::unknown::UnknownReport;
use crate::canvas::Canvas;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScores {
    pub class: String,
    /// Of the photos predicted as this class, the fraction that are (`None` when none were).
    pub precision: Option<f64>,
    /// Of the photos of this class, the fraction predicted as it (`None` when it has none).
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    /// Photos of this class.
    pub support: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub classes: Vec<String>,
    pub photos: u64,
    pub accuracy: f64,
    pub per_class: Vec<ClassScores>,
    /// `confusion[truth][predicted]`: photo counts. The JSON holds its cells that hold photos.
    #[serde(skip)]
    pub confusion: Vec<Vec<u64>>,
    /// The classes the picture and the text's matrix show (all of them up to
    /// `MAX_SHOWN_CLASSES` (40)), in class order.
    pub shown_classes: Vec<String>,
    /// Why `shown_classes` is not every class, when it is not.
    pub shown_note: Option<String>,
    /// How the head told these photos from photos of classes it does not know (`eval
    /// --unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<UnknownReport>,
    #[serde(skip)]
    shown: Vec<usize>,
}

/// What the JSON report holds besides the report's own fields: who wrote it, and the confusion
/// matrix's cells that hold photos.
#[derive(Serialize)]
struct ReportFile<'a> {
    pinsight: &'static str,
    #[serde(flatten)]
    report: &'a EvalReport,
    confusion: Vec<Cell<'a>>,
}

/// A cell of the confusion matrix: how many photos of `truth` were predicted as `predicted`.
#[derive(Serialize)]
struct Cell<'a> {
    truth: &'a str,
    predicted: &'a str,
    photos: u64,
}

/// The `"pinsight"` field of the JSON and the start of the PNG's `Software` text.
const WRITER: &str = "pinsight";

/// The largest existing file `eval` reads to see whether it wrote it.
const REPORT_LIMIT: u64 = 64 << 20;

/// Refuses, before any work, report paths that name something `eval` may not replace: anything
/// but an absent path or a regular file that is a report pinsight wrote (a JSON report with its
/// `"pinsight"` field, a PNG with its `Software` text), or the same path twice.
pub fn check_report_paths(json: &Path, png: &Path) -> Result<()> {
    if json == png {
        return Err(Error::ReportRefused {
            path: png.into(),
            reason: "it is also the JSON report's path: give each report a name of its own".into(),
        });
    }
    check_replaceable(json, "JSON report", is_our_json)?;
    check_replaceable(png, "confusion picture", is_our_png)
}

fn check_replaceable(path: &Path, what: &str, ours: fn(&[u8]) -> bool) -> Result<()> {
    let refuse = |reason: String| Error::ReportRefused {
        path: path.into(),
        reason,
    };
    let metadata = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refuse(format!("cannot look at it: {e}"))),
        Ok(metadata) => metadata,
    };
    if !metadata.file_type().is_file() {
        return Err(refuse(
            "it exists and is not a regular file: name a new file for the report".into(),
        ));
    }
    let written_by_pinsight =
        crate::decode::read_regular_file(path, REPORT_LIMIT, what).is_ok_and(|bytes| ours(&bytes));
    if written_by_pinsight {
        Ok(())
    } else {
        Err(refuse(format!(
            "it exists and is not a {what} pinsight wrote, and pinsight only replaces its own: \
             name a new file, or move it away"
        )))
    }
}

fn is_our_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .is_ok_and(|v| v.get(WRITER).is_some_and(serde_json::Value::is_string))
}

fn is_our_png(bytes: &[u8]) -> bool {
    png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .is_ok_and(|reader| {
            reader.info().uncompressed_latin1_text.iter().any(|chunk| {
                chunk.keyword == "Software" && chunk.text.starts_with(&format!("{WRITER} "))
            })
        })
}

/// The most classes the confusion picture and the text's matrix show: 40 make a picture of
/// about 1600 × 1900 pixels.
pub const MAX_SHOWN_CLASSES: usize = 40;

/// The classes to show of `confusion`, in class order, and a note when they are not all.
fn shown_classes(confusion: &[Vec<u64>]) -> (Vec<usize>, Option<String>) {
    let n = confusion.len();
    if n <= MAX_SHOWN_CLASSES {
        return ((0..n).collect(), None);
    }
    let support = |c: usize| confusion[c].iter().sum::<u64>();
    let predicted = |c: usize| confusion.iter().map(|row| row[c]).sum::<u64>();
    let mut present: Vec<usize> = (0..n)
        .filter(|&c| support(c) > 0 || predicted(c) > 0)
        .collect();
    if present.len() <= MAX_SHOWN_CLASSES {
        let note = format!(
            "the head has {n} classes: the confusion picture and matrix show the {} that have \
             photos or predictions",
            present.len()
        );
        return (present, Some(note));
    }
    // The most confused first: photos of the class predicted as another, and photos of others
    // predicted as it; then the most photos.
    let confused = |c: usize| support(c) + predicted(c) - 2 * confusion[c][c];
    present.sort_by_key(|&c| (std::cmp::Reverse((confused(c), support(c))), c));
    let total = present.len();
    present.truncate(MAX_SHOWN_CLASSES);
    present.sort_unstable();
    let note = format!(
        "the head has {n} classes, {total} with photos or predictions: the confusion picture \
         and matrix show the {MAX_SHOWN_CLASSES} most confused of them (the JSON's `confusion` \
         has them all)"
    );
    (present, Some(note))
}

impl EvalReport {
    /// The report for `(truth, predicted)` class-index pairs.
    pub fn from_pairs(classes: &[String], pairs: &[(usize, usize)]) -> EvalReport {
        let n = classes.len();
        let mut confusion = vec![vec![0u64; n]; n];
        for &(truth, predicted) in pairs {
            confusion[truth][predicted] += 1;
        }
        let correct: u64 = (0..n).map(|c| confusion[c][c]).sum();
        let photos = pairs.len() as u64;
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        let per_class = (0..n)
            .map(|c| {
                let support: u64 = confusion[c].iter().sum();
                let predicted: u64 = confusion.iter().map(|row| row[c]).sum();
                let precision = ratio(confusion[c][c], predicted);
                let recall = ratio(confusion[c][c], support);
                let f1 = match (precision, recall) {
                    (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
                    (Some(_), Some(_)) => Some(0.0),
                    _ => None,
                };
                ClassScores {
                    class: classes[c].clone(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        let (shown, shown_note) = shown_classes(&confusion);
        EvalReport {
            classes: classes.to_vec(),
            photos,
            accuracy: ratio(correct, photos).unwrap_or(0.0),
            per_class,
            shown_classes: shown.iter().map(|&c| classes[c].clone()).collect(),
            shown_note,
            unknown: None,
            shown,
            confusion,
        }
    }

    /// The report as a person reads it in a terminal.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let pct = |v: Option<f64>| {
            v.map_or_else(|| "    -".to_string(), |v| format!("{:5.1}", 100.0 * v))
        };
        let width = self
            .classes
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(
            out,
            "accuracy {:.2}% on {} photos\n",
            100.0 * self.accuracy,
            self.photos
        );
        let _ = writeln!(out, "{:<width$}  precision  recall     F1  photos", "class");
        for scores in &self.per_class {
            let _ = writeln!(
                out,
                "{:<width$}      {}   {}  {}  {:>6}",
                scores.class,
                pct(scores.precision),
                pct(scores.recall),
                pct(scores.f1),
                scores.support
            );
        }
        let _ = writeln!(
            out,
            "\nconfusion matrix (rows: true class, columns: predicted, in class order)"
        );
        if let Some(note) = &self.shown_note {
            let _ = writeln!(out, "({note})");
        }
        for &t in &self.shown {
            let cells: Vec<String> = self
                .shown
                .iter()
                .map(|&p| format!("{:>4}", self.confusion[t][p]))
                .collect();
            let _ = writeln!(out, "{:<width$} {}", self.classes[t], cells.join(""));
        }
        if let Some(unknown) = &self.unknown {
            let _ = write!(out, "\n{}", unknown.text());
        }
        out
    }

    /// The confusion matrix as a heat map: each row shaded by the share of that class's photos
    /// in each predicted class, with the counts and the class names. It shows the
    /// `shown_classes`, at most `MAX_SHOWN_CLASSES` (40); a row's
    /// share counts all its photos, shown or not.
    pub fn heat_map(&self) -> RgbImage {
        const CELL: u32 = 36;
        let n = self.shown.len() as u32;
        let longest = self
            .shown
            .iter()
            .map(|&c| self.classes[c].chars().count() as u32)
            .max()
            .unwrap_or(0)
            .min(24);
        let name_width = longest * 6 + 12;
        // Column names run top to bottom, 10 pixels a letter.
        let top = longest * 10 + 16;
        let (width, height) = (name_width + n * CELL + 8, top + n * CELL + 24);
        let mut canvas = Canvas(RgbImage::from_pixel(
            width,
            height,
            image::Rgb([255, 255, 255]),
        ));
        let text = MonoTextStyle::new(&FONT_6X10, Rgb888::BLACK);
        let centred = TextStyleBuilder::new()
            .alignment(Alignment::Center)
            .baseline(Baseline::Middle)
            .build();
        let right = TextStyleBuilder::new()
            .alignment(Alignment::Right)
            .baseline(Baseline::Middle)
            .build();
        for (row_at, &t) in self.shown.iter().enumerate() {
            let row = &self.confusion[t];
            let total: u64 = row.iter().sum();
            let y = (top + row_at as u32 * CELL) as i32;
            let name = truncate(&self.classes[t], 24);
            let _ = Text::with_text_style(
                &name,
                Point::new(name_width as i32 - 6, y + CELL as i32 / 2),
                text,
                right,
            )
            .draw(&mut canvas);
            for (column_at, &p) in self.shown.iter().enumerate() {
                let count = row[p];
                let share = if total > 0 {
                    count as f64 / total as f64
                } else {
                    0.0
                };
                // White to dark blue; the diagonal (correct) and the rest use the same scale.
                let shade = |full: u8| (255.0 - share * (255.0 - f64::from(full))).round() as u8;
                let colour = Rgb888::new(shade(8), shade(48), shade(107));
                let x = (name_width + column_at as u32 * CELL) as i32;
                let _ = Rectangle::new(Point::new(x, y), Size::new(CELL - 1, CELL - 1))
                    .into_styled(PrimitiveStyle::with_fill(colour))
                    .draw(&mut canvas);
                let ink = if share > 0.5 {
                    Rgb888::WHITE
                } else {
                    Rgb888::BLACK
                };
                let label = count.to_string();
                let centre = Point::new(x + CELL as i32 / 2, y + CELL as i32 / 2);
                let _ = Text::with_text_style(
                    &label,
                    centre,
                    MonoTextStyle::new(&FONT_6X10, ink),
                    centred,
                )
                .draw(&mut canvas);
            }
        }
        // Column names, written top to bottom above each column (FONT_6X10 has no rotation).
        for (column_at, &p) in self.shown.iter().enumerate() {
            let x = (name_width + column_at as u32 * CELL + CELL / 2) as i32;
            for (i, ch) in truncate(&self.classes[p], longest as usize)
                .chars()
                .enumerate()
            {
                let glyph = ch.to_string();
                let _ =
                    Text::with_text_style(&glyph, Point::new(x, 6 + i as i32 * 10), text, centred)
                        .draw(&mut canvas);
            }
        }
        let caption = if self.shown_note.is_some() {
            "rows: true class, columns: predicted; not every class is shown (see the report)"
        } else {
            "rows: true class, columns: predicted"
        };
        let _ = Text::with_text_style(
            caption,
            Point::new(name_width as i32, (top + n * CELL + 12) as i32),
            text,
            TextStyleBuilder::new().baseline(Baseline::Middle).build(),
        )
        .draw(&mut canvas);
        canvas.0
    }

    /// The JSON report: the report's fields, the confusion matrix's cells that hold photos,
    /// and the `"pinsight"` field that marks it as pinsight's.
    pub fn json(&self) -> String {
        let confusion = self
            .confusion
            .iter()
            .enumerate()
            .flat_map(|(t, row)| {
                row.iter()
                    .enumerate()
                    .filter(|&(_, &photos)| photos > 0)
                    .map(move |(p, &photos)| Cell {
                        truth: &self.classes[t],
                        predicted: &self.classes[p],
                        photos,
                    })
            })
            .collect();
        let file = ReportFile {
            pinsight: env!("CARGO_PKG_VERSION"),
            report: self,
            confusion,
        };
        serde_json::to_string_pretty(&file).expect("report serialises") + "\n"
    }

    /// The heat map as PNG bytes, with a `Software` text that marks it as pinsight's.
    pub fn png(&self) -> Vec<u8> {
        let picture = self.heat_map();
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, picture.width(), picture.height());
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .add_text_chunk(
                "Software".into(),
                format!("{WRITER} {}", env!("CARGO_PKG_VERSION")),
            )
            .expect("a Latin-1 keyword and text");
        let mut writer = encoder.write_header().expect("encoding a PNG in memory");
        writer
            .write_image_data(picture.as_raw())
            .expect("encoding a PNG in memory");
        writer.finish().expect("encoding a PNG in memory");
        bytes
    }

    /// Writes the JSON report and the PNG heat map, each through a temporary file and a rename,
    /// after checking again that neither path holds a file pinsight did not write.
    pub fn write(&self, json: &Path, png: &Path) -> Result<()> {
        check_report_paths(json, png)?;
        crate::durable::write(json, self.json().as_bytes())?;
        crate::durable::write(png, &self.png())
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars()
            .take(max.saturating_sub(1))
            .chain(['~'])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_match_a_hand_computed_confusion_matrix() {
        let classes: Vec<String> = ["cat", "dog", "fox"].map(String::from).to_vec();
        // truth → predicted: cat 3×cat 1×dog; dog 2×dog 2×cat; fox 1×fox 1×dog; nothing else.
        let mut pairs = vec![(0, 0); 3];
        pairs.extend([(0, 1), (1, 1), (1, 1), (1, 0), (1, 0), (2, 2), (2, 1)]);
        let report = EvalReport::from_pairs(&classes, &pairs);
        assert_eq!(
            report.confusion,
            vec![vec![3, 1, 0], vec![2, 2, 0], vec![0, 1, 1]]
        );
        assert_eq!(report.photos, 10);
        assert!((report.accuracy - 0.6).abs() < 1e-12);
        let cat = &report.per_class[0];
        // cat: 3 right of 5 predicted as cat, 3 of 4 cats found.
        assert!((cat.precision.unwrap() - 0.6).abs() < 1e-12);
        assert!((cat.recall.unwrap() - 0.75).abs() < 1e-12);
        assert!((cat.f1.unwrap() - 2.0 * 0.6 * 0.75 / 1.35).abs() < 1e-12);
        assert_eq!(cat.support, 4);
        let dog = &report.per_class[1];
        assert!(
            (dog.precision.unwrap() - 0.5).abs() < 1e-12
                && (dog.recall.unwrap() - 0.5).abs() < 1e-12
        );
        let fox = &report.per_class[2];
        assert_eq!((fox.precision, fox.recall), (Some(1.0), Some(0.5)));
        assert!(report.text().contains("accuracy 60.00% on 10 photos"));
    }

    #[test]
    fn a_class_never_predicted_has_no_precision() {
        let classes: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let report = EvalReport::from_pairs(&classes, &[(0, 0), (1, 0)]);
        assert_eq!(report.per_class[1].precision, None);
        assert_eq!(report.per_class[1].recall, Some(0.0));
        assert_eq!(report.per_class[1].f1, None);
    }

    #[test]
    fn a_thousand_classes_make_a_bounded_picture() {
        let classes: Vec<String> = (0..1000).map(|c| format!("class {c}")).collect();
        // Two photos, both right: only their classes are shown.
        let report = EvalReport::from_pairs(&classes, &[(7, 7), (900, 900)]);
        assert_eq!(report.shown_classes, ["class 7", "class 900"]);
        assert!(report.shown_note.as_ref().unwrap().contains("1000 classes"));
        assert_eq!(report.heat_map().width(), 9 * 6 + 12 + 2 * 36 + 8);
        assert!(report.text().contains("have photos or predictions"));
        // Photos of 100 classes, the odd ones mistaken for class 0: those and 0 are shown.
        let pairs: Vec<(usize, usize)> = (1..=100)
            .map(|c| (c, if c % 2 == 1 { 0 } else { c }))
            .collect();
        let report = EvalReport::from_pairs(&classes, &pairs);
        assert_eq!(report.shown_classes.len(), MAX_SHOWN_CLASSES);
        assert_eq!(report.shown_classes[0], "class 0");
        assert!(report.shown_classes[1..].iter().all(|c| {
            let c: usize = c["class ".len()..].parse().unwrap();
            c % 2 == 1
        }));
        let picture = report.heat_map();
        assert!(picture.width() < 2000 && picture.height() < 2000);
        assert_eq!(report.text().lines().count(), 1000 + 6 + MAX_SHOWN_CLASSES);
    }

    #[test]
    fn heat_map_has_a_cell_per_pair_and_room_for_the_names() {
        let classes: Vec<String> = ["longsleeve", "hat"].map(String::from).to_vec();
        let image = EvalReport::from_pairs(&classes, &[(0, 0), (1, 0)]).heat_map();
        let (name_width, top) = (10 * 6 + 12, 10 * 10 + 16);
        assert_eq!(
            image.dimensions(),
            (name_width + 2 * 36 + 8, top + 2 * 36 + 24)
        );
        // Row "hat" is all predicted as "longsleeve": that cell is the darkest shade.
        let cell = image.get_pixel(name_width + 2, top + 36 + 2).0;
        assert_eq!(cell, [8, 48, 107]);
        assert_eq!(
            image.get_pixel(name_width + 36 + 2, top + 36 + 2).0,
            [255, 255, 255]
        );
    }

    #[test]
    fn the_json_holds_the_cells_with_photos_and_both_files_say_who_wrote_them() {
        let classes: Vec<String> = (0..1000).map(|c| format!("class {c}")).collect();
        let report = EvalReport::from_pairs(&classes, &[(3, 3), (3, 3), (3, 7), (9, 3)]);
        let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(json["pinsight"], env!("CARGO_PKG_VERSION"));
        assert_eq!(
            json["confusion"],
            serde_json::json!([
                {"truth": "class 3", "predicted": "class 3", "photos": 2},
                {"truth": "class 3", "predicted": "class 7", "photos": 1},
                {"truth": "class 9", "predicted": "class 3", "photos": 1},
            ])
        );
        assert!(is_our_json(report.json().as_bytes()));
        assert!(is_our_png(&report.png()));
        let picture = image::load_from_memory(&report.png()).unwrap();
        assert_eq!(picture.to_rgb8(), report.heat_map());

        assert!(!is_our_json(b"{\"mine\": 1}"));
        let mut plain = Vec::new();
        report
            .heat_map()
            .write_to(
                &mut std::io::Cursor::new(&mut plain),
                image::ImageFormat::Png,
            )
            .unwrap();
        assert!(!is_our_png(&plain));
    }

    #[test]
    fn only_absent_paths_and_pinsights_own_reports_are_replaced() {
        let work = tempfile::tempdir().unwrap();
        let (json, png) = (work.path().join("r.json"), work.path().join("r.png"));
        check_report_paths(&json, &png).unwrap();
        let report = EvalReport::from_pairs(&["a".into(), "b".into()], &[(0, 1)]);
        report.write(&json, &png).unwrap();
        report.write(&json, &png).unwrap();
        let refused = |json: &Path, png: &Path, why: &str| match check_report_paths(json, png) {
            Err(Error::ReportRefused { reason, .. }) => assert!(reason.contains(why), "{reason}"),
            other => panic!("{} / {}: {other:?}", json.display(), png.display()),
        };
        refused(&json, &json, "also the JSON report's path");
        refused(work.path(), &png, "not a regular file");
        let mine = work.path().join("mine.json");
        std::fs::write(&mine, "[1, 2]").unwrap();
        refused(&mine, &png, "not a JSON report pinsight wrote");
        refused(&json, &mine, "not a confusion picture pinsight wrote");
        let link = work.path().join("link.json");
        std::os::unix::fs::symlink(&json, &link).unwrap();
        refused(&link, &png, "not a regular file");
        assert_eq!(std::fs::read_to_string(&mine).unwrap(), "[1, 2]");
    }
}
