// GPU preprocessing kernels: a raw frame of any supported pixel format -> the normalized planar
// planes PS3 reads (the 378 low-res plane and the 1512 selection plane), the same computation as
// src/image/resample.rs and src/image/convert.rs:
//
//   H[c][y][ox] = sum_t wx[ox][t] * rgb(xstart[ox] + t, y)[c]           (horizontal pass)
//   P[c][oy][ox] = affine_c(sum_t wy[oy][t] * H[c][ystart[oy] + t][ox])  (vertical pass)
//
// with the optional 8-bit rounding of PIL's own resize after each pass (`quantize`). The YUV -> RGB
// conversion rounds with the CPU's operations in the CPU's order (__fmul_rn/__fadd_rn keep the
// compiler from fusing them), so every converted pixel is the same integer as on the CPU; the sums
// differ from the CPU's SIMD sums only in their order (docs/preprocessing.md).
//
// Compiled at run time by NVRTC (src/cuda/nvrtc.rs); no headers.

// Must match `Source` in src/image/gpu.rs field for field.
struct Source {
    const unsigned char* plane0;
    const unsigned char* plane1;
    const unsigned char* plane2;
    long long stride0;
    long long stride1;
    long long stride2;
    int layout;  // 0 packed, 1 gray, 2 packed 4:2:2, 3 semi-planar 4:2:0, 4 planar 4:2:0
    int bpp;     // bytes per pixel of a packed layout
    int o0, o1, o2, o3;  // packed: R, G, B offsets; 4:2:2: Y0, Cb, Y1, Cr; semi-planar: Cb, Cr
    int width;
    int height;
    float ky, y_bias, cr_r, cb_g, cr_g, cb_b;
};

// Round to the nearest integer (ties to even) after clipping to 0..=255: convert.rs's `q8`.
__device__ __forceinline__ float q8(float v) {
    return rintf(fminf(fmaxf(v, 0.0f), 255.0f));
}

// PIL's rounding of a resize pass: resample.rs's `quantize8` (ties up, then clipped).
__device__ __forceinline__ float quantize8(float v) {
    return fminf(fmaxf(floorf(__fadd_rn(v, 0.5f)), 0.0f), 255.0f);
}

__device__ __forceinline__ float3 yuv(const Source& s, unsigned char y, unsigned char cb,
                                      unsigned char cr) {
    float fcb = (float)cb - 128.0f;
    float fcr = (float)cr - 128.0f;
    float dr = __fmul_rn(s.cr_r, fcr);
    float dg = -__fadd_rn(__fmul_rn(s.cb_g, fcb), __fmul_rn(s.cr_g, fcr));
    float db = __fmul_rn(s.cb_b, fcb);
    float yv = __fadd_rn(__fmul_rn(s.ky, (float)y), s.y_bias);
    return make_float3(q8(__fadd_rn(yv, dr)), q8(__fadd_rn(yv, dg)), q8(__fadd_rn(yv, db)));
}

// RGB (integers in 0..=255) of pixel (x, y).
__device__ __forceinline__ float3 pixel(const Source& s, int x, int y) {
    switch (s.layout) {
    case 0: {
        const unsigned char* p = s.plane0 + y * s.stride0 + (long long)x * s.bpp;
        return make_float3((float)p[s.o0], (float)p[s.o1], (float)p[s.o2]);
    }
    case 1: {
        float v = (float)s.plane0[y * s.stride0 + x];
        return make_float3(v, v, v);
    }
    case 2: {
        const unsigned char* m = s.plane0 + y * s.stride0 + 4LL * (x / 2);
        return yuv(s, m[(x & 1) ? s.o2 : s.o0], m[s.o1], m[s.o3]);
    }
    case 3: {
        unsigned char l = s.plane0[y * s.stride0 + x];
        const unsigned char* c = s.plane1 + (y / 2) * s.stride1 + 2LL * (x / 2);
        return yuv(s, l, c[s.o0], c[s.o1]);
    }
    default: {
        unsigned char l = s.plane0[y * s.stride0 + x];
        unsigned char cb = s.plane1[(y / 2) * s.stride1 + x / 2];
        unsigned char cr = s.plane2[(y / 2) * s.stride2 + x / 2];
        return yuv(s, l, cb, cr);
    }
    }
}

// The `taps`-wide dot products of output column ox over source row y, for the three channels
// (PIL's 8-bit rounding after if asked): one horizontal-pass value, shared by the plane and the
// patch kernels so both compute exactly the same numbers.
__device__ __forceinline__ float3 horizontal_dot(const Source& src, const int* xstart,
                                                 const float* xw, int taps, int quantize, int ox,
                                                 int y) {
    int x0 = xstart[ox];
    const float* w = xw + (long long)ox * taps;
    float r = 0.0f, g = 0.0f, b = 0.0f;
    for (int t = 0; t < taps; ++t) {
        float k = w[t];
        if (k == 0.0f) continue;
        float3 p = pixel(src, x0 + t, y);
        r = fmaf(k, p.x, r);
        g = fmaf(k, p.y, g);
        b = fmaf(k, p.z, b);
    }
    if (quantize) {
        r = quantize8(r);
        g = quantize8(g);
        b = quantize8(b);
    }
    return make_float3(r, g, b);
}

// The `taps`-tall dot products of output row oy over a horizontal-pass buffer whose rows `row_step`
// floats apart start at row `first` of the source (channel planes `plane` floats apart, column
// `col`), then the 8-bit rounding if asked and `value * scale + bias`: one output value per channel.
__device__ __forceinline__ void vertical_dot(const float* tmp, long long plane, long long row_step,
                                             int col, int first, const int* ystart,
                                             const float* yw, int taps, int oy, int quantize,
                                             const float scale[3], const float bias[3],
                                             float out[3]) {
    int y0 = ystart[oy] - first;
    const float* w = yw + (long long)oy * taps;
    float acc[3] = {0.0f, 0.0f, 0.0f};
    for (int t = 0; t < taps; ++t) {
        float k = w[t];
        if (k == 0.0f) continue;
        long long i = (long long)(y0 + t) * row_step + col;
        acc[0] = fmaf(k, tmp[i], acc[0]);
        acc[1] = fmaf(k, tmp[plane + i], acc[1]);
        acc[2] = fmaf(k, tmp[2 * plane + i], acc[2]);
    }
    for (int c = 0; c < 3; ++c) {
        float v = quantize ? quantize8(acc[c]) : acc[c];
        out[c] = __fadd_rn(__fmul_rn(v, scale[c]), bias[c]);
    }
}

// One thread per (source row y = blockIdx.y, output column ox): the row's `taps`-wide dot products
// for the three channels, into tmp [3][height][out_w].
extern "C" __global__ void horizontal(Source src, const int* xstart, const float* xw, int taps,
                                      int out_w, int quantize, float* tmp) {
    int ox = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y;
    if (ox >= out_w || y >= src.height) return;
    float3 v = horizontal_dot(src, xstart, xw, taps, quantize, ox, y);
    long long plane = (long long)src.height * out_w;
    long long i = (long long)y * out_w + ox;
    tmp[i] = v.x;
    tmp[plane + i] = v.y;
    tmp[2 * plane + i] = v.z;
}

// One thread per (output row oy = blockIdx.y, output column ox): the column's `taps`-tall dot
// products over tmp, the 8-bit rounding if asked, then `value * scale + bias`, into the planar
// output [3][out_h][out_w].
extern "C" __global__ void vertical(const float* tmp, int in_h, int out_w, const int* ystart,
                                    const float* yw, int taps, int out_h, int quantize,
                                    float s0, float s1, float s2, float b0, float b1, float b2,
                                    float* out) {
    int ox = blockIdx.x * blockDim.x + threadIdx.x;
    int oy = blockIdx.y;
    if (ox >= out_w || oy >= out_h) return;
    float scale[3] = {s0, s1, s2};
    float bias[3] = {b0, b1, b2};
    float v[3];
    vertical_dot(tmp, (long long)in_h * out_w, out_w, ox, 0, ystart, yw, taps, oy, quantize, scale,
                 bias, v);
    long long out_plane = (long long)out_h * out_w;
    for (int c = 0; c < 3; ++c) out[c * out_plane + (long long)oy * out_w + ox] = v[c];
}

// One high-res scale's sampling for the patch gather: must match `GatherScale` in src/image/gpu.rs
// field for field.
struct GatherScale {
    const int* xstart;
    const float* xw;
    const int* ystart;
    const float* yw;
    // The selection plane [3][plane_size][plane_size] when this scale's patches are crops of it
    // (copied, as the CPU copies them), else null.
    const float* plane;
    int xtaps;
    int ytaps;
    int quantize;
    int plane_size;
};

// Up to four high-res scales, by scale index (PS3 has three).
struct GatherScales {
    GatherScale s[4];
};

// One block per selected token (`tokens`: [count][3] scale index, patch row, patch column): the
// token's patch [3][patch][patch] of its scale, into out[token], computed as the plane kernels
// compute that region of the whole scale: the horizontal pass over the source rows the patch's
// vertical windows span (into this block's `tmp`, 3 * max_rows * patch floats), then the vertical
// pass with the normalization.
extern "C" __global__ void gather(Source src, GatherScales scales, const int* tokens, int patch,
                                  int max_rows, float s0, float s1, float s2, float b0, float b1,
                                  float b2, float* tmp, float* out) {
    const int* tok = tokens + 3LL * blockIdx.x;
    const GatherScale sc = scales.s[tok[0]];
    int oy0 = tok[1] * patch;
    int ox0 = tok[2] * patch;
    int area = patch * patch;
    float* dst = out + 3LL * area * blockIdx.x;
    if (sc.plane != 0) {
        long long pp = (long long)sc.plane_size * sc.plane_size;
        for (int i = threadIdx.x; i < 3 * area; i += blockDim.x) {
            int c = i / area, r = (i % area) / patch, x = i % patch;
            dst[i] = sc.plane[c * pp + (long long)(oy0 + r) * sc.plane_size + ox0 + x];
        }
        return;
    }
    int first = sc.ystart[oy0];
    int rows = sc.ystart[oy0 + patch - 1] + sc.ytaps - first;
    if (rows > max_rows) rows = max_rows;  // never: the host sizes max_rows from the same tables
    float* h = tmp + 3LL * max_rows * patch * blockIdx.x;
    long long hp = (long long)max_rows * patch;
    for (int i = threadIdx.x; i < rows * patch; i += blockDim.x) {
        int r = i / patch, x = i % patch;
        float3 v = horizontal_dot(src, sc.xstart, sc.xw, sc.xtaps, sc.quantize, ox0 + x, first + r);
        h[i] = v.x;
        h[hp + i] = v.y;
        h[2 * hp + i] = v.z;
    }
    __syncthreads();
    float scale[3] = {s0, s1, s2};
    float bias[3] = {b0, b1, b2};
    for (int i = threadIdx.x; i < area; i += blockDim.x) {
        int r = i / patch, x = i % patch;
        float v[3];
        vertical_dot(h, hp, patch, x, first, sc.ystart, sc.yw, sc.ytaps, oy0 + r, sc.quantize,
                     scale, bias, v);
        for (int c = 0; c < 3; ++c) dst[c * area + i] = v[c];
    }
}
