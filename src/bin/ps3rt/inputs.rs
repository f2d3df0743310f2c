//! Reading the CLI's inputs: images (PNG, JPEG, PPM/PGM), `.npy` float32 tensors, and frames of
//! video files (YUV4MPEG2 `.y4m`, raw frames with `--raw-format`/`--raw-size`).

use std::path::{Path, PathBuf};

use clap::Args;
use ps3rt::capture::{CapturedFrame, FrameSource, RawVideoSource, Y4mSource};
use ps3rt::{ColorSpec, Error, MjpegDecoder, PixelFormat};

/// Options for video inputs, shared by `run` and `camera`.
#[derive(Args, Debug, Clone, Default)]
pub struct VideoArgs {
    /// The input is raw video: frames of this pixel format back to back (rgb8, bgr8, rgba8,
    /// bgra8, gray8, yuyv, uyvy, nv12, nv21, i420), packed rows. Needs --raw-size.
    #[arg(long, value_name = "FORMAT", requires = "raw_size")]
    pub raw_format: Option<String>,
    /// Frame size of a raw video input, e.g. 1920x1080.
    #[arg(long, value_name = "WxH", requires = "raw_format")]
    pub raw_size: Option<String>,
    /// YUV -> RGB conversion of YUV inputs: bt601 or bt709, with -limited (default) or -full
    /// (default bt601-limited; a y4m file's XCOLORRANGE flag sets the range).
    #[arg(long, value_name = "SPEC")]
    pub color: Option<String>,
    /// Which frame of a video input `run` encodes, counting from 0.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub frame: u64,
}

/// `WxH` as two numbers.
pub fn parse_size(text: &str) -> Option<(u32, u32)> {
    let (w, h) = text.split_once(['x', 'X'])?;
    let (w, h) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

impl VideoArgs {
    /// The raw format and size, if given; usage errors name the flag.
    pub fn raw(&self) -> Result<Option<(PixelFormat, u32, u32)>, Error> {
        let (Some(f), Some(s)) = (&self.raw_format, &self.raw_size) else {
            return Ok(None);
        };
        let format = f
            .parse::<PixelFormat>()
            .map_err(|e| Error::InvalidArgument(format!("--raw-format: {e}")))?;
        let (w, h) = parse_size(s).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "--raw-size {s:?}: expected WIDTHxHEIGHT, e.g. 1920x1080"
            ))
        })?;
        Ok(Some((format, w, h)))
    }

    /// The colour spec given with --color.
    pub fn color(&self) -> Result<Option<ColorSpec>, Error> {
        self.color
            .as_deref()
            .map(|c| {
                ColorSpec::from_name(c).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "--color {c:?}: expected bt601 or bt709, optionally with -limited or -full"
                    ))
                })
            })
            .transpose()
    }
}

/// Whether `path` is a YUV4MPEG2 file (by extension or by its first bytes).
pub fn is_y4m(path: &Path) -> bool {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("y4m"))
    {
        return true;
    }
    let mut head = [0u8; 10];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| &head == b"YUV4MPEG2 ")
}

/// Frame `video.frame` of a y4m file, or of a raw video when `--raw-format` is given, as RGB8 (the
/// same 8-bit values the encoder computes when it reads the YUV frame itself, so the features are
/// identical; the overlay needs the RGB pixels anyway).
fn load_video(path: &Path, video: &VideoArgs) -> Result<Option<LoadedInput>, Error> {
    let color = video.color()?;
    let mut source: Box<dyn FrameSource> = if let Some((format, w, h)) = video.raw()? {
        let s = RawVideoSource::open(path, w, h, format)?;
        Box::new(match color {
            Some(c) => s.with_color(c),
            None => s,
        })
    } else if is_y4m(path) {
        let s = Y4mSource::open(path)?;
        Box::new(match color {
            Some(c) => s.with_color(c),
            None => s,
        })
    } else {
        return Ok(None);
    };
    let mut frame = CapturedFrame::new();
    for i in 0..=video.frame {
        if !source.next_frame(&mut frame)? {
            return Err(input_error(
                path,
                format!(
                    "--frame {}: the video has {i} frame{}",
                    video.frame,
                    if i == 1 { "" } else { "s" }
                ),
            ));
        }
    }
    let mut decoder = MjpegDecoder::new();
    let view = frame.frame(&mut decoder)?;
    let (width, height) = (view.width(), view.height());
    let mut rgb = Vec::new();
    view.to_rgb8(&mut rgb);
    log::info!(
        "{}: frame {} ({} {width}x{height}, {}) read",
        source.describe(),
        video.frame,
        view.format(),
        view.color()
    );
    Ok(Some(LoadedInput::Image { width, height, rgb }))
}

/// A decoded input, owning its pixels.
pub enum LoadedInput {
    /// 8-bit RGB, packed.
    Image {
        width: u32,
        height: u32,
        rgb: Vec<u8>,
    },
    /// A normalized `[3, S, S]` float32 tensor.
    Tensor { size: usize, values: Vec<f32> },
}

impl LoadedInput {
    /// "3840x2160 rgb8" or "tensor [3, 3780, 3780]".
    pub fn describe(&self) -> String {
        match self {
            LoadedInput::Image { width, height, .. } => format!("{width}x{height} rgb8"),
            LoadedInput::Tensor { size, .. } => {
                format!("tensor [3, {size}, {size}] float32 (normalized)")
            }
        }
    }

    /// "3840x2160" or "[3, 3780, 3780]", for one-line listings.
    pub fn short(&self) -> String {
        match self {
            LoadedInput::Image { width, height, .. } => format!("{width}x{height}"),
            LoadedInput::Tensor { size, .. } => format!("[3, {size}, {size}]"),
        }
    }

    /// Input kind for JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            LoadedInput::Image { .. } => "image",
            LoadedInput::Tensor { .. } => "tensor",
        }
    }
}

fn input_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Input {
        path: PathBuf::from(path),
        reason: reason.into(),
    }
}

/// Load `path`: `.npy` as a tensor, `.y4m` as video (its first frame), anything else as an image
/// (format detected from the content).
pub fn load(path: &Path) -> Result<LoadedInput, Error> {
    load_with(path, &VideoArgs::default())
}

/// Load `path` as [`load`] does, with the video options (a raw video needs them).
pub fn load_with(path: &Path, video: &VideoArgs) -> Result<LoadedInput, Error> {
    if let Some(input) = load_video(path, video)? {
        return Ok(input);
    }
    let is_npy = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let bytes = std::fs::read(path).map_err(|e| input_error(path, format!("cannot read: {e}")))?;
    if is_npy {
        load_npy(path, &bytes)
    } else {
        load_image(path, &bytes)
    }
}

fn load_image(path: &Path, bytes: &[u8]) -> Result<LoadedInput, Error> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| input_error(path, format!("cannot read: {e}")))?;
    if reader.format().is_none() {
        return Err(input_error(
            path,
            "not a PNG, JPEG or PPM/PGM image (or a .npy tensor)",
        ));
    }
    let img = reader
        .decode()
        .map_err(|e| input_error(path, format!("cannot decode: {e}")))?;
    let rgb = img.to_rgb8();
    let (width, height) = rgb.dimensions();
    Ok(LoadedInput::Image {
        width,
        height,
        rgb: rgb.into_raw(),
    })
}

fn load_npy(path: &Path, bytes: &[u8]) -> Result<LoadedInput, Error> {
    let npy = npyz::NpyFile::new(bytes)
        .map_err(|e| input_error(path, format!("not a valid .npy file: {e}")))?;
    let shape: Vec<u64> = npy.shape().to_vec();
    if npy.order() != npyz::Order::C {
        return Err(input_error(
            path,
            "Fortran-ordered arrays are not supported; save it C-ordered",
        ));
    }
    let dims: Vec<u64> = match shape.as_slice() {
        [1, rest @ ..] if rest.len() == 3 => rest.to_vec(),
        _ => shape.clone(),
    };
    let [3, h, w] = dims[..] else {
        return Err(input_error(
            path,
            format!("shape {shape:?}; expected [3, S, S] (or [1, 3, S, S])"),
        ));
    };
    if h != w {
        return Err(input_error(
            path,
            format!("shape {shape:?} is not square; PS3's pixel_values are [3, S, S]"),
        ));
    }
    let values: Vec<f32> = npy.into_vec::<f32>().map_err(|e| {
        input_error(
            path,
            format!("cannot read float32 values (dtype must be '<f4'): {e}"),
        )
    })?;
    Ok(LoadedInput::Tensor {
        size: h as usize,
        values,
    })
}

/// File extensions a folder or glob run picks up (case-insensitive).
pub const BATCH_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "ppm", "pgm", "pbm", "pnm", "pam", "npy", "y4m",
];

/// What `--input` names: one file, or the files of a folder or glob pattern.
pub enum InputSet {
    /// A single file (which may not exist: reading it reports the error).
    Single(PathBuf),
    /// Files of a folder or glob, sorted, with the folder or the pattern's literal prefix they are
    /// named relative to, and how many other files were skipped.
    Batch {
        /// The images and tensors, sorted by path.
        files: Vec<PathBuf>,
        /// The folder, or the part of the pattern before its first wildcard.
        base: PathBuf,
        /// Entries skipped because their extension is not one of [`BATCH_EXTENSIONS`].
        skipped: usize,
    },
}

/// Whether `path` has one of [`BATCH_EXTENSIONS`].
pub fn is_batch_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| BATCH_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Resolve `--input`: an existing directory is walked (recursively with `recursive`), a pattern with
/// `*`, `?` or `[` that is not an existing file is expanded as a glob, anything else is one file.
/// Hidden entries (names starting with '.') are skipped in walks and globs.
pub fn resolve(spec: &Path, recursive: bool) -> Result<InputSet, Error> {
    if spec.is_dir() {
        let mut files = Vec::new();
        let mut skipped = 0;
        walk(spec, recursive, &mut files, &mut skipped)?;
        files.sort();
        return Ok(InputSet::Batch {
            files,
            base: spec.to_path_buf(),
            skipped,
        });
    }
    let text = spec.to_string_lossy();
    if spec.exists() || !has_wildcard(&text) {
        return Ok(InputSet::Single(spec.to_path_buf()));
    }
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let paths = glob::glob_with(&text, options)
        .map_err(|e| input_error(spec, format!("not a valid glob pattern: {e}")))?;
    let mut files = Vec::new();
    let mut skipped = 0;
    for entry in paths {
        let path =
            entry.map_err(|e| input_error(e.path(), format!("cannot read: {}", e.error())))?;
        if !path.is_file() {
            continue;
        }
        if is_batch_file(&path) {
            files.push(path);
        } else {
            skipped += 1;
        }
    }
    files.sort();
    // The literal prefix: the components before the first one with a wildcard.
    let base: PathBuf = spec
        .components()
        .take_while(|c| !has_wildcard(&c.as_os_str().to_string_lossy()))
        .collect();
    Ok(InputSet::Batch {
        files,
        base,
        skipped,
    })
}

fn walk(
    dir: &Path,
    recursive: bool,
    files: &mut Vec<PathBuf>,
    skipped: &mut usize,
) -> Result<(), Error> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| input_error(dir, format!("cannot list: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| input_error(dir, format!("cannot list: {e}")))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Symbolic links to files are followed; links to folders are not (no loops).
        let kind = entry
            .file_type()
            .map_err(|e| input_error(&path, format!("cannot stat: {e}")))?;
        if kind.is_dir() {
            if recursive {
                walk(&path, recursive, files, skipped)?;
            }
        } else if path.is_file() {
            if is_batch_file(&path) {
                files.push(path);
            } else {
                *skipped += 1;
            }
        }
    }
    Ok(())
}
