//! Preprocessing on an NVIDIA GPU (cargo feature `cuda`): the low-res and selection planes of a raw
//! frame resampled by CUDA kernels instead of the CPU.
//!
//! The planes are the encoder's O(pixels) work: every frame pixel is read to build them, so on a
//! CPU an 8K frame costs several times a 720p one (docs/performance.md, "what is left"). On a GPU
//! the same sums take a fraction of a millisecond; what stays proportional to the frame is copying
//! its bytes to the device (on a Jetson, a copy within the same memory).
//!
//! The kernels (`gpu_resample.cu`) compute what `resample.rs` computes, from the same
//! [`ScaleSampler`] weights: each converted pixel is the CPU's integer exactly, each sum the same
//! terms added in another order (differences of a few float ulps; `tests/gpu_preprocess.rs`).
//! Buffers are allocated when the frame size changes and reused for every frame of that size.

use std::sync::Arc;
use std::time::Instant;

use super::convert::YuvCoeffs;
use super::frame::{Frame, Layout};
use super::plan::{InputPlan, SourceKind};
use super::resample::{Affine, ScaleSampler};
use crate::cuda::{
    self, Context, DeviceBuffer, Function, HostBuffer, HostRegistration, Module, Stream,
};
use crate::error::{Error, Result};
use crate::geometry::TokenPos;

const SOURCE: &str = include_str!("gpu_resample.cu");
/// Threads per block along output columns.
const BLOCK: u32 = 128;
/// Byte alignment of each frame plane inside the upload buffer.
const PLANE_ALIGN: usize = 256;
/// Bytes staged per copy in [`FrameUpload::Staged`]: the DMA of one chunk runs while the CPU copies
/// the next.
const CHUNK: usize = 4 << 20;
/// From this many frame bytes on, a discrete GPU's automatic choice locks the frame's own pages
/// ([`FrameUpload::Registered`]) instead of staging them: locking costs ~0.3 ms a frame, the
/// staging copy ~0.08 ms per MB (H100 host, docs/performance.md finding 32).
const REGISTER_FROM: usize = 8 << 20;
/// Environment variable overriding how frames reach the GPU (`auto`, `pageable`, `registered`,
/// `staged`, `mapped` or `pinned`).
pub const UPLOAD_ENV: &str = "PS3RT_GPU_UPLOAD";

/// How a frame's bytes reach the kernels. What stays proportional to the frame on a GPU is this
/// copy: an 8K RGB8 frame is 99.5 MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameUpload {
    /// `cuMemcpyHtoD` straight from the caller's memory (the driver stages pageable memory itself,
    /// on one thread).
    Pageable,
    /// The frame's own pages are locked for the copy and unlocked after it (`cuMemHostRegister`):
    /// the DMA reads them with no CPU copy, at the cost of locking them each frame.
    Registered,
    /// The CPU threads copy the frame into page-locked memory in 4 MiB chunks, and each chunk's
    /// DMA to the GPU runs while the next is copied (the default on a discrete GPU).
    Staged,
    /// The CPU threads copy the frame into page-locked memory mapped into the GPU, which the
    /// kernels read in place (the default on an integrated GPU such as a Jetson's, where that
    /// memory is the GPU's own: one copy, no DMA).
    Mapped,
    /// The frame already lies in page-locked memory ([`crate::PinnedBuffer`], `cudaHostAlloc`,
    /// `cudaHostRegister`): one DMA straight from it on a discrete GPU, and none on an integrated
    /// one, whose kernels read it in place. Chosen whenever that is so, unless another mode is set;
    /// set, a frame in pageable memory is an error.
    Pinned,
}

impl FrameUpload {
    /// Parse "pageable", "registered", "staged", "mapped" or "pinned".
    pub fn parse(s: &str) -> Option<FrameUpload> {
        match s {
            "pageable" => Some(FrameUpload::Pageable),
            "registered" => Some(FrameUpload::Registered),
            "staged" => Some(FrameUpload::Staged),
            "mapped" => Some(FrameUpload::Mapped),
            "pinned" => Some(FrameUpload::Pinned),
            _ => None,
        }
    }

    /// [`FrameUpload::parse`], and "auto" as `Some(None)`.
    fn parse_choice(s: &str) -> Option<Option<FrameUpload>> {
        if s == "auto" {
            return Some(None);
        }
        Self::parse(s).map(Some)
    }

    /// The name [`FrameUpload::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            FrameUpload::Pageable => "pageable",
            FrameUpload::Registered => "registered",
            FrameUpload::Staged => "staged",
            FrameUpload::Mapped => "mapped",
            FrameUpload::Pinned => "pinned",
        }
    }
}

/// The kernels' view of a frame: must match `struct Source` in gpu_resample.cu field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Source {
    planes: [u64; 3],
    strides: [i64; 3],
    layout: i32,
    bpp: i32,
    offsets: [i32; 4],
    width: i32,
    height: i32,
    yuv: [f32; 6],
}

/// What GPU preprocessing would run on, found without creating a context or compiling anything
/// ([`probe`]; `ps3rt info` prints it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuProbe {
    /// The CUDA device ordinal.
    pub device: i32,
    /// The device's name.
    pub name: String,
    /// Compute capability (major, minor), e.g. (8, 7) for a Jetson Orin.
    pub capability: (i32, i32),
    /// Whether the GPU shares the host's memory (Jetson): frames are then brought over `mapped`.
    pub integrated: bool,
    /// The driver's CUDA version (major, minor).
    pub driver_cuda: (i32, i32),
    /// NVRTC's version (major, minor).
    pub nvrtc: (i32, i32),
    /// The NVRTC library that was opened.
    pub nvrtc_path: String,
}

/// Whether CUDA device `device` can run GPU preprocessing here: the driver, the device and NVRTC,
/// or the error naming the one missing.
pub fn probe(device: i32) -> Result<GpuProbe> {
    let info = cuda::device_info(device)?;
    let (major, minor, nvrtc_path) = cuda::nvrtc_version()?;
    Ok(GpuProbe {
        device,
        name: info.name,
        capability: info.capability,
        integrated: info.integrated,
        driver_cuda: (info.driver_version / 1000, info.driver_version % 1000 / 10),
        nvrtc: (major, minor),
        nvrtc_path,
    })
}

/// How long the parts of the last [`GpuResampler`] run took, in milliseconds (each part waited
/// for before the next was queued).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuTimings {
    /// Copying the frame's bytes to the device.
    pub upload_ms: f64,
    /// The resampling kernels.
    pub kernels_ms: f64,
    /// Copying the planes back to the host.
    pub download_ms: f64,
    /// Whether the planes came back into page-locked memory (one DMA each;
    /// `PS3RT_GPU_DOWNLOAD`).
    pub download_locked: bool,
    /// Gathering the selected patches on the GPU, all steps of the frame (0 where the CPU
    /// gathers them).
    pub gather_ms: f64,
    /// How the frame was brought to the GPU.
    pub upload: Option<FrameUpload>,
}

/// One scale's sampling weights on the device (a [`ScaleSampler`]'s tables).
#[derive(Debug)]
struct SamplerTables {
    size: usize,
    x_taps: usize,
    y_taps: usize,
    quantize: bool,
    x_start: DeviceBuffer,
    x_weights: DeviceBuffer,
    y_start: DeviceBuffer,
    y_weights: DeviceBuffer,
}

/// One output plane's weights and buffers on the device.
#[derive(Debug)]
struct PlaneBuffers {
    tables: SamplerTables,
    /// Horizontal pass output `[3, frame height, size]`.
    rows: DeviceBuffer,
    /// The plane `[3, size, size]`.
    out: DeviceBuffer,
}

/// The kernels' view of one high-res scale for the patch gather: must match `struct GatherScale` in
/// gpu_resample.cu field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct GatherScale {
    x_start: u64,
    x_weights: u64,
    y_start: u64,
    y_weights: u64,
    /// The selection plane when this scale's patches are crops of it, else 0.
    plane: u64,
    x_taps: i32,
    y_taps: i32,
    quantize: i32,
    plane_size: i32,
}

/// High-res scales the gather kernel takes (`struct GatherScales`; PS3 has three).
const GATHER_SCALES: usize = 4;
/// Bytes of horizontal-pass scratch one gather launch may use; more tokens take more launches.
const GATHER_SCRATCH: usize = 64 << 20;
/// Environment variable: `cpu` keeps gathering the selected patches on the CPU under GPU
/// preprocessing (to compare), `gpu` (the default) gathers them on the GPU.
pub const GATHER_ENV: &str = "PS3RT_GPU_GATHER";
/// Environment variable: how the planes and gathered patches come back to the encoder's buffers.
/// `auto` (the default) page-locks those buffers once on a discrete GPU, so each download is one
/// DMA; `locked` does so on an integrated GPU too; `pageable` leaves them as they are (the
/// driver then stages every download through its own page-locked buffers).
pub const DOWNLOAD_ENV: &str = "PS3RT_GPU_DOWNLOAD";

/// The patch gather's tables and buffers, for one frame size (tables) and the most tokens asked
/// for so far (buffers; they only grow).
#[derive(Debug)]
struct GatherBuffers {
    /// (width, height) of the frames the tables are for.
    key: (usize, usize),
    /// One per high-res scale.
    scales: Vec<SamplerTables>,
    /// Source rows one patch's horizontal pass spans at most, over every scale.
    max_rows: usize,
    patch: usize,
    /// Tokens the buffers below hold, and tokens one launch handles.
    capacity: usize,
    per_launch: usize,
    tokens: Option<DeviceBuffer>,
    scratch: Option<DeviceBuffer>,
    out: Option<DeviceBuffer>,
    /// The tokens as the kernel reads them (scale, row, column), reused.
    host_tokens: Vec<i32>,
}

/// Resamples frames into the encoder's planes on one CUDA device. One per encoder (it owns a stream
/// and buffers); the CUDA context is the device's primary context, shared with the CUDA runtime.
#[derive(Debug)]
pub struct GpuResampler {
    device: i32,
    ctx: Arc<Context>,
    stream: Stream,
    horizontal: Function,
    vertical: Function,
    gather: Function,
    /// Declared after the functions: unloaded once they are gone.
    _module: Module,
    frame: Option<DeviceBuffer>,
    /// Page-locked staging of the frame ([`FrameUpload::Staged`], [`FrameUpload::Mapped`]).
    staging: Option<HostBuffer>,
    /// How frames are brought to the GPU (`None`: chosen per frame, [`GpuResampler::upload_mode`]).
    mode: Option<FrameUpload>,
    /// How the last frame was brought to the GPU.
    last_mode: Option<FrameUpload>,
    /// (width, height, output sizes) the planes' weights were uploaded for.
    key: Option<(usize, usize, [usize; 2])>,
    planes: Vec<PlaneBuffers>,
    timings: GpuTimings,
    /// Whether [`GpuResampler::gather`] runs (`PS3RT_GPU_GATHER`).
    gather_on_gpu: bool,
    /// The frame the last run brought over (its first plane's address and length, and size) and
    /// how the kernels read it: what the gather reads from the device.
    on_device: Option<((usize, usize, u32, u32), Source)>,
    gather_buffers: Option<GatherBuffers>,
    /// Whether [`GpuResampler::lock_outputs`] page-locks buffers (`PS3RT_GPU_DOWNLOAD`).
    lock_downloads: bool,
    /// The encoder's buffers page-locked for the downloads ([`GpuResampler::lock_outputs`]).
    locked: Vec<HostRegistration>,
}

impl GpuResampler {
    /// Open CUDA device `device`, compile the kernels for it (NVRTC) and load them.
    ///
    /// Errors name what is missing: no driver, no such device, no NVRTC, a compile or load failure.
    pub fn new(device: i32) -> Result<GpuResampler> {
        let ctx = Context::new(device)?;
        let cubin = compiled_kernels(ctx.info.capability)?;
        let module = Module::load(&ctx, &cubin)?;
        let horizontal = module.function("horizontal")?;
        let vertical = module.function("vertical")?;
        let gather = module.function("gather")?;
        let stream = Stream::new(&ctx)?;
        let mode = match std::env::var(UPLOAD_ENV) {
            Ok(v) => FrameUpload::parse_choice(&v).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{UPLOAD_ENV}={v:?}: expected auto, pageable, registered, staged, mapped or pinned"
                ))
            })?,
            Err(_) => None,
        };
        let gather_on_gpu = match std::env::var(GATHER_ENV).as_deref() {
            Ok("cpu") => false,
            Ok("gpu") | Err(_) => true,
            Ok(v) => {
                return Err(Error::InvalidArgument(format!(
                    "{GATHER_ENV}={v:?}: expected gpu or cpu"
                )));
            }
        };
        let lock_downloads = match std::env::var(DOWNLOAD_ENV).as_deref() {
            Ok("auto") | Err(_) => !ctx.info.integrated,
            Ok("locked") => true,
            Ok("pageable") => false,
            Ok(v) => {
                return Err(Error::InvalidArgument(format!(
                    "{DOWNLOAD_ENV}={v:?}: expected auto, locked or pageable"
                )));
            }
        };
        let (major, minor, nvrtc) = cuda::nvrtc_version()?;
        log::info!(
            "GPU preprocessing on CUDA device {device}: {} (sm_{}{}{}, driver CUDA {}.{}, NVRTC {major}.{minor} from {nvrtc}), frames {}, planes back into {} buffers",
            ctx.info.name,
            ctx.info.capability.0,
            ctx.info.capability.1,
            if ctx.info.integrated {
                ", integrated"
            } else {
                ""
            },
            ctx.info.driver_version / 1000,
            ctx.info.driver_version % 1000 / 10,
            mode.map_or("chosen per frame (auto)", FrameUpload::name),
            if lock_downloads {
                "page-locked"
            } else {
                "pageable"
            }
        );
        Ok(GpuResampler {
            device,
            ctx,
            stream,
            horizontal,
            vertical,
            gather,
            _module: module,
            frame: None,
            staging: None,
            mode,
            last_mode: None,
            key: None,
            planes: Vec::new(),
            timings: GpuTimings::default(),
            gather_on_gpu,
            on_device: None,
            gather_buffers: None,
            lock_downloads,
            locked: Vec::new(),
        })
    }

    /// Page-lock `buffers`, the encoder's planes and patch buffers, so that each download of the
    /// planes ([`GpuResampler::planes`]) and of the gathered patches ([`GpuResampler::gather`])
    /// into them is one DMA rather than a copy staged through the driver's buffers (29 MB of
    /// planes per frame at PS3-4K's sizes). Done once per buffer, on a discrete GPU unless
    /// `PS3RT_GPU_DOWNLOAD` says otherwise. A buffer the driver does not lock (memory locked
    /// already, or a page shared with one that is, or no lockable memory left) is logged and
    /// downloaded into as before: slower, the same values.
    ///
    /// # Safety
    ///
    /// Each buffer must stay allocated at the same address until this resampler is dropped
    /// ([`HostRegistration::new`]: a download after the memory was freed and its address reused
    /// would land in the pages locked now, not in the new memory).
    pub(crate) unsafe fn lock_outputs(&mut self, buffers: &[&[f32]]) {
        if !self.lock_downloads {
            return;
        }
        for buffer in buffers {
            if buffer.is_empty() || self.locked.iter().any(|l| l.covers(buffer)) {
                continue;
            }
            let bytes = std::mem::size_of_val(*buffer);
            let ptr = buffer.as_ptr().cast_mut().cast::<u8>();
            // SAFETY: the buffer stays allocated at this address while `self` lives (this
            // function's contract), and the registration is dropped with `self`.
            match unsafe { HostRegistration::new(&self.ctx, ptr, bytes) } {
                Ok(locked) => self.locked.push(locked),
                Err(e) => {
                    log::info!("GPU preprocessing: a {bytes}-byte buffer stays pageable: {e}")
                }
            }
        }
    }

    /// Whether every one of `buffers` lies in memory [`GpuResampler::lock_outputs`] locked.
    fn all_locked(&self, buffers: &[&[f32]]) -> bool {
        buffers
            .iter()
            .all(|b| self.locked.iter().any(|l| l.covers(b)))
    }

    /// The CUDA device ordinal.
    pub fn device(&self) -> i32 {
        self.device
    }

    /// The device's name, e.g. "NVIDIA H100 80GB HBM3" or "Orin".
    pub fn device_name(&self) -> &str {
        &self.ctx.info.name
    }

    /// How a frame of `bytes` bytes in pageable memory is brought to this GPU: as set, else on an
    /// integrated GPU [`FrameUpload::Mapped`], on a discrete one [`FrameUpload::Registered`] from
    /// 8 MiB on and [`FrameUpload::Staged`] below. (A frame in page-locked memory goes
    /// [`FrameUpload::Pinned`] unless another mode is set.)
    pub fn upload_mode(&self, bytes: usize) -> FrameUpload {
        match self.mode {
            Some(mode) => mode,
            None if self.ctx.info.integrated => FrameUpload::Mapped,
            None if bytes >= REGISTER_FROM => FrameUpload::Registered,
            None => FrameUpload::Staged,
        }
    }

    /// How the last frame was brought to the GPU (`None` before the first).
    pub fn last_upload_mode(&self) -> Option<FrameUpload> {
        self.last_mode
    }

    /// Bring frames to the GPU this way from the next frame on (`None`: choose per frame, as
    /// [`GpuResampler::upload_mode`] says).
    pub fn set_upload_mode(&mut self, mode: Option<FrameUpload>) {
        self.mode = mode;
    }

    /// How long the parts of the last run took.
    pub fn timings(&self) -> GpuTimings {
        self.timings
    }

    /// Fill the low-res and selection planes the pipeline's `plan` describes from `frame`.
    pub(crate) fn planes(
        &mut self,
        frame: &Frame<'_>,
        plan: &InputPlan,
        affine: &Affine,
        lowres: &mut [f32],
        hrsel: &mut [f32],
    ) -> Result<()> {
        let samplers = [&plan.lowres, &plan.hrsel];
        self.run(frame, samplers, affine, [lowres, hrsel])
    }

    /// Whether the selected patches are gathered on the GPU too ([`GpuResampler::gather`]; the
    /// default, `PS3RT_GPU_GATHER=cpu` turns it off).
    pub fn gathers(&self) -> bool {
        self.gather_on_gpu
    }

    /// The selected patches `tokens` of `frame` (the frame whose planes the last run resampled,
    /// still on the device) into `out` (`[tokens, 3, patch, patch]`), normalized, each resampled
    /// from the frame as the plane kernels resample a whole scale; those of the scale sampled as the
    /// selection plane is are copied out of that plane (as the CPU does). What the CPU's gather
    /// computes, within float rounding: the frame is not read by the CPU again.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gather(
        &mut self,
        frame: &Frame<'_>,
        samplers: &[ScaleSampler],
        hrsel_scale: Option<usize>,
        tokens: &[TokenPos],
        patch: usize,
        affine: &Affine,
        out: &mut [f32],
    ) -> Result<()> {
        let t = Instant::now();
        let n = tokens.len();
        let len = 3 * patch * patch;
        let (w, h) = (frame.width() as usize, frame.height() as usize);
        let source = match self.on_device {
            Some((key, source)) if key == frame_key(frame) => source,
            _ => {
                return Err(Error::InvalidArgument(
                    "GPU gather: the frame is not the one whose planes were just resampled".into(),
                ));
            }
        };
        if out.len() < n * len || patch == 0 || samplers.len() > GATHER_SCALES {
            return Err(Error::InvalidArgument(format!(
                "GPU gather: {n} patches of {patch}x{patch} into {} values, {} scales",
                out.len(),
                samplers.len()
            )));
        }
        if n == 0 {
            return Ok(());
        }
        self.ctx.bind()?;
        self.prepare_gather(samplers, (w, h), patch, n)?;
        let missing = || Error::InvalidArgument("GPU gather: no buffers".into());
        let g = self.gather_buffers.as_mut().ok_or_else(missing)?;
        g.host_tokens.clear();
        for tok in tokens {
            // The kernel reads the tables of the token's patch rows and columns: they must exist.
            let inside = g
                .scales
                .get(usize::from(tok.scale))
                .is_some_and(|t| (usize::from(tok.row.max(tok.col)) + 1) * patch <= t.size);
            if !inside {
                return Err(Error::InvalidArgument(format!(
                    "GPU gather: token {tok:?} lies outside the model's {} high-res scales",
                    g.scales.len()
                )));
            }
            g.host_tokens
                .extend([i32::from(tok.scale), i32::from(tok.row), i32::from(tok.col)]);
        }
        let (Some(dev_tokens), Some(scratch), Some(dev_out)) =
            (g.tokens.as_mut(), g.scratch.as_ref(), g.out.as_ref())
        else {
            return Err(missing());
        };
        dev_tokens.upload_at(&self.stream, 0, &g.host_tokens)?;
        let mut scales = [GatherScale::default(); GATHER_SCALES];
        for (i, (tables, view)) in g.scales.iter().zip(scales.iter_mut()).enumerate() {
            let plane = (hrsel_scale == Some(i))
                .then(|| self.planes.get(1))
                .flatten()
                .filter(|p| p.tables.size == tables.size)
                .map(|p| (&p.out, p.tables.size));
            *view = tables.kernel_view(plane);
        }
        let (mut source, mut scales) = (source, scales);
        let (mut patch_i, mut max_rows) = (patch as i32, g.max_rows as i32);
        let [mut s0, mut s1, mut s2] = affine.scale;
        let [mut b0, mut b1, mut b2] = affine.bias;
        let mut tmp = scratch.address();
        let mut first = 0;
        let mut launched = Ok(());
        while first < n && launched.is_ok() {
            let count = (n - first).min(g.per_launch);
            let mut toks = dev_tokens.address() + (12 * first) as u64;
            let mut dst = dev_out.address() + (4 * len * first) as u64;
            let mut args = [
                (&raw mut source).cast(),
                (&raw mut scales).cast(),
                (&raw mut toks).cast(),
                (&raw mut patch_i).cast(),
                (&raw mut max_rows).cast(),
                (&raw mut s0).cast(),
                (&raw mut s1).cast(),
                (&raw mut s2).cast(),
                (&raw mut b0).cast(),
                (&raw mut b1).cast(),
                (&raw mut b2).cast(),
                (&raw mut tmp).cast(),
                (&raw mut dst).cast(),
            ];
            // SAFETY: one argument per parameter of `gather`, in order, with its declared types
            // (Source and GatherScales are repr(C) and match the CUDA structs). One block per token
            // of this launch: `toks` holds `count` (scale, row, column) triples whose scale indexes
            // a table uploaded for this frame size and whose patch lies inside its scale (both
            // checked above); each table's windows lie inside the frame (AxisWeights'
            // invariant) and a patch's rows span at most `max_rows` (computed from the same tables),
            // the scratch holds `per_launch * 3 * max_rows * patch` floats, `dst` `count * len`
            // floats of the output buffer; the frame is on the device as `source` describes (the
            // run that just brought it over, whose frame `frame_key` matched), and a crop's plane
            // buffer holds that scale's plane of this frame.
            launched = unsafe {
                self.gather
                    .launch(&self.stream, (count as u32, 1, 1), (BLOCK, 1, 1), &mut args)
            };
            first += count;
        }
        let downloaded =
            launched.and_then(|()| dev_out.download(&self.stream, &mut out[..n * len]));
        // Waited for in every case: queued kernels may read the caller's frame in place.
        let synced = self.stream.synchronize();
        downloaded.and(synced)?;
        self.timings.gather_ms += ms(t);
        Ok(())
    }

    /// Build or grow the gather's tables for frames of `size` and buffers for `n` tokens of `patch`
    /// (reused from frame to frame).
    fn prepare_gather(
        &mut self,
        samplers: &[ScaleSampler],
        size: (usize, usize),
        patch: usize,
        n: usize,
    ) -> Result<()> {
        if self
            .gather_buffers
            .as_ref()
            .is_none_or(|g| g.key != size || g.patch != patch)
        {
            self.gather_buffers = None;
            let mut scales = Vec::with_capacity(samplers.len());
            for s in samplers {
                scales.push(SamplerTables::new(&self.ctx, &self.stream, s)?);
            }
            let max_rows = samplers
                .iter()
                .map(|s| SamplerTables::rows_per_patch(s, patch))
                .max()
                .unwrap_or(0)
                .max(1);
            self.gather_buffers = Some(GatherBuffers {
                key: size,
                scales,
                max_rows,
                patch,
                capacity: 0,
                per_launch: (GATHER_SCRATCH / (4 * 3 * max_rows * patch)).max(1),
                tokens: None,
                scratch: None,
                out: None,
                host_tokens: Vec::new(),
            });
        }
        let g = self
            .gather_buffers
            .as_mut()
            .ok_or_else(|| Error::InvalidArgument("GPU gather: no buffers".into()))?;
        if g.capacity < n {
            let per_launch = g.per_launch.min(n);
            g.tokens = None;
            g.scratch = None;
            g.out = None;
            g.tokens = Some(DeviceBuffer::new(&self.ctx, 12 * n)?);
            g.scratch = Some(DeviceBuffer::new(
                &self.ctx,
                4 * 3 * g.max_rows * patch * per_launch,
            )?);
            g.out = Some(DeviceBuffer::new(&self.ctx, 4 * 3 * patch * patch * n)?);
            g.host_tokens.reserve(3 * n);
            g.capacity = n;
        }
        Ok(())
    }

    /// Two planes of `frame` at scales `sizes` of a model whose largest scale is `s_max`, each
    /// normalized as the model does; what [`super::scale_plane`] computes on the CPU, for each size.
    pub fn scale_planes(
        &mut self,
        frame: &Frame<'_>,
        s_max: usize,
        sizes: [usize; 2],
        normalization: &crate::package::manifest::Normalization,
    ) -> Result<[Vec<f32>; 2]> {
        check_scales(&sizes, s_max)?;
        let (w, h) = (frame.width() as usize, frame.height() as usize);
        let a = InputPlan::sampler_for(SourceKind::Frame, w, h, s_max, sizes[0]);
        let b = InputPlan::sampler_for(SourceKind::Frame, w, h, s_max, sizes[1]);
        let affine = Affine::from_u8_normalization(normalization.mean, normalization.std);
        let mut out = [
            vec![0f32; 3 * sizes[0] * sizes[0]],
            vec![0f32; 3 * sizes[1] * sizes[1]],
        ];
        let [p, q] = &mut out;
        self.key = None;
        self.run(frame, [&a, &b], &affine, [p, q])?;
        self.key = None;
        Ok(out)
    }

    /// The `tokens`' patches of `frame` gathered on the GPU for a model whose largest scale is
    /// `s_max`, whose high-res scales are `scales` and whose selection plane is `hrsel` (patches of
    /// a scale sampled as that plane is are copied out of it), normalized as the model does:
    /// `[tokens, 3, patch, patch]`, what the pipeline's gather computes on the GPU, for comparing
    /// with crops of [`super::scale_plane`].
    pub fn scale_patches(
        &mut self,
        frame: &Frame<'_>,
        s_max: usize,
        (lowres, hrsel): (usize, usize),
        scales: &[usize],
        tokens: &[TokenPos],
        normalization: &crate::package::manifest::Normalization,
    ) -> Result<Vec<f32>> {
        const PATCH: usize = 14;
        check_scales(scales, s_max)?;
        // The planes first: they bring the frame over, and the selection plane stays on the device.
        self.scale_planes(frame, s_max, [lowres, hrsel], normalization)?;
        let (w, h) = (frame.width() as usize, frame.height() as usize);
        let sampler = |size| InputPlan::sampler_for(SourceKind::Frame, w, h, s_max, size);
        let high: Vec<ScaleSampler> = scales.iter().map(|&s| sampler(s)).collect();
        let plane_sampler = sampler(hrsel);
        let hrsel_scale = high.iter().position(|s| *s == plane_sampler);
        let affine = Affine::from_u8_normalization(normalization.mean, normalization.std);
        // (`gather` refuses a token outside its scale.)
        let mut out = vec![0f32; tokens.len() * 3 * PATCH * PATCH];
        self.gather(frame, &high, hrsel_scale, tokens, PATCH, &affine, &mut out)?;
        self.gather_buffers = None;
        Ok(out)
    }

    fn run(
        &mut self,
        frame: &Frame<'_>,
        samplers: [&ScaleSampler; 2],
        affine: &Affine,
        outs: [&mut [f32]; 2],
    ) -> Result<()> {
        let (w, h) = (frame.width() as usize, frame.height() as usize);
        let sizes = samplers.map(|s| s.x.out_len());
        for (s, out) in samplers.iter().zip(&outs) {
            let n = s.x.out_len();
            if s.y.out_len() != n
                || out.len() != 3 * n * n
                || s.x.in_len() != w
                || s.y.in_len() != h
            {
                return Err(Error::InvalidArgument(format!(
                    "GPU preprocessing: a {n}x{n} plane buffer of {} values for a {w}x{h} frame",
                    out.len()
                )));
            }
        }
        self.ctx.bind()?;
        if self.key != Some((w, h, sizes)) {
            self.key = None;
            self.planes.clear();
            for s in samplers {
                self.planes
                    .push(PlaneBuffers::new(&self.ctx, &self.stream, s, h)?);
            }
            self.key = Some((w, h, sizes));
        }

        let t = Instant::now();
        self.on_device = None;
        let source = self.upload(frame)?;
        self.stream.synchronize()?;
        let upload_ms = ms(t);
        self.on_device = Some((frame_key(frame), source));

        let t = Instant::now();
        let launched = self
            .planes
            .iter()
            .try_for_each(|plane| self.launch(&source, plane, affine));
        // Waited for even when a launch failed: the kernels already queued may read the caller's
        // frame (in place, `pinned` on an integrated GPU), which the caller may free on return.
        let synced = self.stream.synchronize();
        launched.and(synced)?;
        let kernels_ms = ms(t);

        let t = Instant::now();
        let download_locked = self.all_locked(&[&*outs[0], &*outs[1]]);
        for (plane, out) in self.planes.iter().zip(outs) {
            plane.out.download(&self.stream, out)?;
        }
        self.stream.synchronize()?;
        self.timings = GpuTimings {
            upload_ms,
            kernels_ms,
            download_ms: ms(t),
            download_locked,
            upload: self.last_mode,
            gather_ms: 0.0,
        };
        Ok(())
    }

    /// Bring the frame's planes to the device as [`FrameUpload`] says (buffers grown when a larger
    /// frame arrives) and describe them for the kernels.
    fn upload(&mut self, frame: &Frame<'_>) -> Result<Source> {
        let format = frame.format();
        let count = format.plane_count();
        // Each plane's offset in the upload buffer, and its bytes.
        let mut all: [(usize, &[u8]); 3] = [(0, &[]); 3];
        let mut total = 0;
        for (p, part) in all.iter_mut().enumerate().take(count) {
            *part = (total, frame.plane(p));
            total += part.1.len().div_ceil(PLANE_ALIGN) * PLANE_ALIGN;
        }
        let parts = &all[..count];
        // Where each plane lies in page-locked memory, its device address (else 0).
        let mut pinned = [0u64; 3];
        let mut all_pinned = true;
        for (address, &(_, bytes)) in pinned.iter_mut().zip(parts) {
            *address = self.pinned_address(bytes).unwrap_or(0);
            all_pinned &= *address != 0;
        }
        let mode = match self.mode {
            None if all_pinned => FrameUpload::Pinned,
            Some(FrameUpload::Pinned) if !all_pinned => {
                self.last_mode = None;
                return Err(Error::InvalidFrame(format!(
                    "{UPLOAD_ENV}=pinned, but the frame's pixels are not all in page-locked memory \
                     (allocate frames with ps3rt's PinnedBuffer or cudaHostAlloc)"
                )));
            }
            _ => self.upload_mode(total),
        };
        self.last_mode = Some(mode);
        let in_place = mode == FrameUpload::Mapped
            || (mode == FrameUpload::Pinned && self.ctx.info.integrated);
        if !in_place && self.frame.as_ref().is_none_or(|b| b.len() < total) {
            self.frame = None;
            self.frame = Some(DeviceBuffer::new(&self.ctx, total)?);
        }
        let staged = matches!(mode, FrameUpload::Staged | FrameUpload::Mapped);
        if staged && self.staging.as_ref().is_none_or(|b| b.len() < total) {
            self.staging = None;
            self.staging = Some(HostBuffer::new(&self.ctx, total)?);
        }
        let missing = || Error::InvalidFrame("no buffer for the frame on the GPU".into());
        // Each plane's device address: the frame buffer's start plus the plane's offset, except
        // where the kernels read the planes where they lie.
        let mut addresses = [0u64; 3];
        let base = match mode {
            FrameUpload::Pageable => {
                let device = self.frame.as_mut().ok_or_else(missing)?;
                for &(at, bytes) in parts {
                    device.upload_at(&self.stream, at, bytes)?;
                }
                device.address()
            }
            FrameUpload::Registered => {
                let device = self.frame.as_mut().ok_or_else(missing)?;
                for (&(at, bytes), &locked) in parts.iter().zip(&pinned) {
                    // Memory already page-locked is copied as it lies (cuMemHostRegister refuses
                    // cuMemHostAlloc memory with "invalid argument").
                    if locked != 0 {
                        device.upload_pinned(&self.stream, at, bytes)?;
                    } else {
                        device.upload_registered(&self.stream, at, bytes)?;
                    }
                }
                device.address()
            }
            FrameUpload::Staged => {
                let device = self.frame.as_mut().ok_or_else(missing)?;
                let staging = self.staging.as_mut().ok_or_else(missing)?;
                for &(offset, bytes) in parts {
                    for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
                        let at = offset + i * CHUNK;
                        let range = at..at + chunk.len();
                        copy_on_two_threads(&mut staging.as_mut_slice()[range.clone()], chunk);
                        device.upload_from_host(&self.stream, staging, range)?;
                    }
                }
                device.address()
            }
            FrameUpload::Mapped => {
                let staging = self.staging.as_mut().ok_or_else(missing)?;
                for &(at, bytes) in parts {
                    copy_on_two_threads(&mut staging.as_mut_slice()[at..at + bytes.len()], bytes);
                }
                staging.device_address()
            }
            FrameUpload::Pinned if in_place => {
                addresses = pinned;
                0
            }
            FrameUpload::Pinned => {
                let device = self.frame.as_mut().ok_or_else(missing)?;
                for &(at, bytes) in parts {
                    device.upload_pinned(&self.stream, at, bytes)?;
                }
                device.address()
            }
        };
        if base != 0 {
            for (address, &(at, _)) in addresses.iter_mut().zip(parts) {
                *address = base + at as u64;
            }
        }
        let mut source = Source {
            width: frame.width() as i32,
            height: frame.height() as i32,
            ..Source::default()
        };
        source.planes = addresses;
        for p in 0..count {
            source.strides[p] = frame.plane_stride(p) as i64;
        }
        match format.layout() {
            Layout::Packed { bpp, rgb } => {
                source.layout = 0;
                source.bpp = bpp as i32;
                source.offsets = [rgb[0] as i32, rgb[1] as i32, rgb[2] as i32, 0];
            }
            Layout::Gray => source.layout = 1,
            Layout::Packed422 { y0, cb, y1, cr } => {
                source.layout = 2;
                source.offsets = [y0 as i32, cb as i32, y1 as i32, cr as i32];
            }
            Layout::SemiPlanar420 { cb, cr } => {
                source.layout = 3;
                source.offsets = [cb as i32, cr as i32, 0, 0];
            }
            Layout::Planar420 => source.layout = 4,
        }
        source.yuv = YuvCoeffs::new(frame.color()).terms();
        Ok(source)
    }

    /// The device address of `bytes` where all of it lies in page-locked memory mapped into the
    /// device, with its last byte where its first one says (one mapping); else `None`.
    fn pinned_address(&self, bytes: &[u8]) -> Option<u64> {
        let last = bytes.len().checked_sub(1)?;
        let first = self.ctx.host_device_pointer(bytes.as_ptr())?;
        let end = self.ctx.host_device_pointer(bytes[last..].as_ptr())?;
        (end.checked_sub(first) == Some(last as u64)).then_some(first)
    }

    /// Queue both passes of one plane.
    fn launch(&self, source: &Source, plane: &PlaneBuffers, affine: &Affine) -> Result<()> {
        let mut source = *source;
        let tables = &plane.tables;
        let mut x_start = tables.x_start.address();
        let mut x_weights = tables.x_weights.address();
        let mut x_taps = tables.x_taps as i32;
        let mut out_w = tables.size as i32;
        let mut quantize = i32::from(tables.quantize);
        let mut rows = plane.rows.address();
        let columns = (tables.size as u32).div_ceil(BLOCK);
        let mut args = [
            (&raw mut source).cast(),
            (&raw mut x_start).cast(),
            (&raw mut x_weights).cast(),
            (&raw mut x_taps).cast(),
            (&raw mut out_w).cast(),
            (&raw mut quantize).cast(),
            (&raw mut rows).cast(),
        ];
        // SAFETY: one argument per parameter of `horizontal`, in order, with the types it declares
        // (Source is repr(C) and matches the CUDA struct; addresses as 64-bit pointers; ints as
        // i32). The x tables hold `size` starts and `size * x_taps` weights whose windows lie inside
        // the frame width (AxisWeights' invariant), the frame planes were uploaded with the strides
        // given, and `rows` holds 3 * height * size floats: the grid covers exactly that.
        unsafe {
            self.horizontal.launch(
                &self.stream,
                (columns, source.height as u32, 1),
                (BLOCK, 1, 1),
                &mut args,
            )?;
        }
        let mut in_h = source.height;
        let mut y_start = tables.y_start.address();
        let mut y_weights = tables.y_weights.address();
        let mut y_taps = tables.y_taps as i32;
        let mut out_h = tables.size as i32;
        let [mut s0, mut s1, mut s2] = affine.scale;
        let [mut b0, mut b1, mut b2] = affine.bias;
        let mut out = plane.out.address();
        let mut args = [
            (&raw mut rows).cast(),
            (&raw mut in_h).cast(),
            (&raw mut out_w).cast(),
            (&raw mut y_start).cast(),
            (&raw mut y_weights).cast(),
            (&raw mut y_taps).cast(),
            (&raw mut out_h).cast(),
            (&raw mut quantize).cast(),
            (&raw mut s0).cast(),
            (&raw mut s1).cast(),
            (&raw mut s2).cast(),
            (&raw mut b0).cast(),
            (&raw mut b1).cast(),
            (&raw mut b2).cast(),
            (&raw mut out).cast(),
        ];
        // SAFETY: one argument per parameter of `vertical`, in order, with its declared types; the
        // y windows lie inside the frame height, `rows` was written by the launch above on the
        // same stream, and `out` holds 3 * size * size floats: the grid covers exactly that.
        unsafe {
            self.vertical.launch(
                &self.stream,
                (columns, tables.size as u32, 1),
                (BLOCK, 1, 1),
                &mut args,
            )
        }
    }
}

impl PlaneBuffers {
    fn new(ctx: &Arc<Context>, stream: &Stream, s: &ScaleSampler, height: usize) -> Result<Self> {
        let tables = SamplerTables::new(ctx, stream, s)?;
        let size = tables.size;
        Ok(PlaneBuffers {
            tables,
            rows: DeviceBuffer::new(ctx, 4 * 3 * height * size)?,
            out: DeviceBuffer::new(ctx, 4 * 3 * size * size)?,
        })
    }
}

impl SamplerTables {
    fn new(ctx: &Arc<Context>, stream: &Stream, s: &ScaleSampler) -> Result<Self> {
        let size = s.x.out_len();
        let table = |axis: &super::kernel::AxisWeights| -> Result<(DeviceBuffer, DeviceBuffer)> {
            let starts: Vec<i32> = (0..axis.out_len()).map(|o| axis.start(o) as i32).collect();
            let weights: Vec<f32> = (0..axis.out_len())
                .flat_map(|o| axis.weights(o).iter().copied())
                .collect();
            let mut a = DeviceBuffer::new(ctx, 4 * starts.len())?;
            a.upload_at(stream, 0, &starts)?;
            let mut b = DeviceBuffer::new(ctx, 4 * weights.len())?;
            b.upload_at(stream, 0, &weights)?;
            Ok((a, b))
        };
        let (x_start, x_weights) = table(&s.x)?;
        let (y_start, y_weights) = table(&s.y)?;
        stream.synchronize()?;
        Ok(SamplerTables {
            size,
            x_taps: s.x.taps(),
            y_taps: s.y.taps(),
            quantize: s.quantize,
            x_start,
            x_weights,
            y_start,
            y_weights,
        })
    }

    /// Source rows the horizontal pass of one `patch`-row band of outputs spans, at most.
    fn rows_per_patch(s: &ScaleSampler, patch: usize) -> usize {
        let (n, taps) = (s.y.out_len(), s.y.taps());
        (0..n / patch.max(1))
            .map(|p| s.y.start((p + 1) * patch - 1) + taps - s.y.start(p * patch))
            .max()
            .unwrap_or(0)
    }

    fn kernel_view(&self, plane: Option<(&DeviceBuffer, usize)>) -> GatherScale {
        GatherScale {
            x_start: self.x_start.address(),
            x_weights: self.x_weights.address(),
            y_start: self.y_start.address(),
            y_weights: self.y_weights.address(),
            plane: plane.map_or(0, |(b, _)| b.address()),
            x_taps: self.x_taps as i32,
            y_taps: self.y_taps as i32,
            quantize: i32::from(self.quantize),
            plane_size: plane.map_or(0, |(_, size)| size as i32),
        }
    }
}

/// Scales `sizes` of a model whose largest scale is `s_max` must be in 1..=s_max (the test helpers'
/// check).
fn check_scales(sizes: &[usize], s_max: usize) -> Result<()> {
    if sizes
        .iter()
        .any(|&s| s == 0 || s > s_max || s_max > super::MAX_FRAME_SIDE as usize)
    {
        return Err(Error::InvalidArgument(format!(
            "scales {sizes:?} must be in 1..={s_max}"
        )));
    }
    Ok(())
}

/// What identifies the frame a run brought over: its first plane's address and length, and size.
fn frame_key(frame: &Frame<'_>) -> (usize, usize, u32, u32) {
    let plane = frame.plane(0);
    (
        plane.as_ptr() as usize,
        plane.len(),
        frame.width(),
        frame.height(),
    )
}

/// The kernels compiled for compute capability `capability`, once per process: every encoder (one
/// per thread or camera) loads the same code (NVRTC took 57 - 78 ms per compile on this project's
/// machine).
fn compiled_kernels(capability: (i32, i32)) -> Result<Arc<[u8]>> {
    type Compiled = Vec<((i32, i32), Arc<[u8]>)>;
    static CACHE: std::sync::Mutex<Compiled> = std::sync::Mutex::new(Vec::new());
    // A panic while holding the lock leaves the list as it was (entries are pushed whole).
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, cubin)) = cache.iter().find(|(c, _)| *c == capability) {
        return Ok(cubin.clone());
    }
    let cubin: Arc<[u8]> =
        cuda::compile(SOURCE, "gpu_resample.cu", capability, cuda::Output::Cubin)?.into();
    cache.push((capability, cubin.clone()));
    Ok(cubin)
}

/// `dst.copy_from_slice(src)`, the two halves on two threads of the current rayon pool (the
/// encoder's workers): one core does not saturate the memory bus on a large frame.
fn copy_on_two_threads(dst: &mut [u8], src: &[u8]) {
    /// Below this a second thread costs more than it saves.
    const SPLIT: usize = 1 << 20;
    if src.len() < SPLIT {
        dst.copy_from_slice(src);
        return;
    }
    let half = src.len() / 2;
    let (d0, d1) = dst.split_at_mut(half);
    let (s0, s1) = src.split_at(half);
    rayon::join(|| d0.copy_from_slice(s0), || d1.copy_from_slice(s1));
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels compile with NVRTC for a Jetson Orin (sm_87), a Turing card (sm_75, the oldest
    /// CUDA 13 targets) and a Hopper card (sm_90), and keep the entry points and parameters the
    /// launches pass. Needs NVRTC only, no GPU: scripts/test.sh points `PS3RT_NVRTC_LIB` at the
    /// project venv's and sets `PS3RT_TEST_NVRTC`, which makes a missing NVRTC a failure.
    #[test]
    fn kernels_compile_for_jetson_and_datacenter_gpus() {
        let required = std::env::var_os("PS3RT_TEST_NVRTC").is_some();
        let (major, minor, path) = match cuda::nvrtc_version() {
            Ok(v) => v,
            Err(e) => {
                assert!(!required, "PS3RT_TEST_NVRTC is set: {e}");
                assert!(e.to_string().contains("NVRTC"), "{e}");
                return;
            }
        };
        eprintln!("NVRTC {major}.{minor} ({path})");
        for cap in [(7, 5), (8, 7), (9, 0)] {
            let cubin = cuda::compile(SOURCE, "gpu_resample.cu", cap, cuda::Output::Cubin)
                .unwrap_or_else(|e| panic!("sm_{}{}: {e}", cap.0, cap.1));
            assert_eq!(&cubin[..4], b"\x7fELF", "a CUBIN is an ELF image");
            let has = |name: &[u8]| cubin.windows(name.len()).any(|w| w == name);
            assert!(has(b"horizontal\0") && has(b"vertical\0") && has(b"gather\0"));
            let ptx = cuda::compile(SOURCE, "gpu_resample.cu", cap, cuda::Output::Ptx)
                .unwrap_or_else(|e| panic!("compute_{}{}: {e}", cap.0, cap.1));
            let ptx = String::from_utf8_lossy(&ptx);
            assert!(
                ptx.contains(&format!(".target sm_{}{}", cap.0, cap.1)),
                "{}",
                &ptx[..ptx.len().min(400)]
            );
            // Entry points with the parameter counts `launch` and `gather` pass.
            for (name, params) in [("horizontal", 7), ("vertical", 15), ("gather", 13)] {
                let start = ptx
                    .find(&format!(".entry {name}("))
                    .unwrap_or_else(|| panic!("no entry {name}"));
                let decl = &ptx[start..start + ptx[start..].find(')').unwrap()];
                assert_eq!(decl.matches(".param").count(), params, "{decl}");
            }
        }
        // A compile error comes back with the compiler's log.
        let bad = "extern \"C\" __global__ void k() { nope; }";
        let e = cuda::compile(bad, "bad.cu", (8, 7), cuda::Output::Cubin)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nvrtcCompileProgram") && e.contains("nope"),
            "{e}"
        );
    }

    /// `Source` has the layout of the CUDA struct: three pointers, three strides, eight ints and six
    /// floats, no padding.
    #[test]
    fn source_layout_matches_the_kernel_struct() {
        assert_eq!(std::mem::size_of::<Source>(), 3 * 8 + 3 * 8 + 8 * 4 + 6 * 4);
        assert_eq!(std::mem::align_of::<Source>(), 8);
        assert_eq!(std::mem::offset_of!(Source, layout), 48);
        assert_eq!(std::mem::offset_of!(Source, yuv), 80);
        // struct GatherScale: five pointers, four ints; GatherScales: four of them.
        assert_eq!(std::mem::size_of::<GatherScale>(), 5 * 8 + 4 * 4);
        assert_eq!(std::mem::offset_of!(GatherScale, x_taps), 40);
        assert_eq!(std::mem::size_of::<[GatherScale; GATHER_SCALES]>(), 4 * 56);
    }
}
