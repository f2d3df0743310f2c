/*
 * Calls every function of the ps3rt C API, the error paths included, and checks the results: the
 * program the C tests run natively, statically linked, under valgrind and under AddressSanitizer.
 *
 *   api_test [--quick] [PACKAGE_DIR]
 *
 * With a package directory, ps3rt_model_load is tested on it too. --quick (for valgrind, where one
 * encode of the tiny model takes about 30 s) still calls every function and every error path but
 * skips the extra encodes that compare pixel formats, strides and prompts.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ps3rt.h"

#define W 320
#define H 180
#define BUDGET 32

static int quick = 0;

/* A deterministic RGB test pattern with edges (so the selection has something to prefer). */
static void fill_rgb(uint8_t* rgb, uint32_t w, uint32_t h) {
    for (uint32_t y = 0; y < h; y++) {
        for (uint32_t x = 0; x < w; x++) {
            uint8_t* p = rgb + 3 * ((size_t)y * w + x);
            p[0] = (uint8_t)((x * 7 + y * 3) & 255);
            p[1] = (uint8_t)(((x / 16 + y / 16) & 1) ? 230 : 20);
            p[2] = (uint8_t)((y * 5) & 255);
        }
    }
}

static ps3rt_frame frame_of(const uint8_t* data, uint32_t w, uint32_t h, int32_t format, size_t stride) {
    ps3rt_frame f;
    memset(&f, 0, sizeof f);
    f.width = w;
    f.height = h;
    f.format = format;
    f.planes[0] = data;
    f.strides[0] = stride;
    return f;
}

typedef struct {
    int calls;
    int saw_backend_choice;
    ps3rt_status nested; /* what ps3rt_set_log_callback returned from inside the callback */
} log_counter;

static void count_logs(ps3rt_log_level level, const char* message, void* user_data) {
    log_counter* c = (log_counter*)user_data;
    if (c->calls++ == 0) c->nested = ps3rt_set_log_callback(NULL, NULL, PS3RT_LOG_LEVEL_OFF);
    if (level == PS3RT_LOG_LEVEL_INFO && strstr(message, "backend") != NULL) c->saw_backend_choice = 1;
}

static int same_floats(const float* a, const float* b, size_t n) {
    return memcmp(a, b, n * sizeof(float)) == 0;
}

static void test_versions_and_strings(void) {
    CHECK(strcmp(ps3rt_version(), PS3RT_VERSION) == 0);
    CHECK(PS3RT_CHECK_ABI());
    CHECK(ps3rt_abi_version() == PS3RT_ABI_VERSION);
    CHECK(strcmp(ps3rt_status_string(PS3RT_STATUS_OK), "ok") == 0);
    CHECK(strcmp(ps3rt_status_string(PS3RT_STATUS_BUSY), "encoder busy") == 0);
    CHECK(strcmp(ps3rt_status_string(12345), "unknown status") == 0);
    for (int32_t s = PS3RT_STATUS_OK; s <= PS3RT_STATUS_INTERNAL; s++) {
        CHECK(strcmp(ps3rt_status_string(s), "unknown status") != 0);
    }
    CHECK(strcmp(ps3rt_last_error(), "") == 0); /* nothing failed on this thread yet */
}

static void test_options(void) {
    ps3rt_model_options mo = ps3rt_model_default_options();
    CHECK(mo.struct_size == sizeof mo && mo.backend == PS3RT_BACKEND_AUTO && mo.threads == 0);
    ps3rt_encoder_options eo = ps3rt_encoder_default_options();
    CHECK(eo.struct_size == sizeof eo && eo.budget == 0 && eo.steps == 1);
    CHECK_FAILS(ps3rt_model_options_init(NULL, sizeof mo), PS3RT_STATUS_INVALID_ARGUMENT,
                "ps3rt_model_options_init: options is NULL");
    CHECK_FAILS(ps3rt_encoder_options_init(&eo, 4), PS3RT_STATUS_INVALID_ARGUMENT, "struct_size 4");
    CHECK_FAILS(ps3rt_encoder_options_init(NULL, sizeof eo), PS3RT_STATUS_INVALID_ARGUMENT, "NULL");
    /* A struct from a newer header: the tail this library does not know is zeroed. */
    struct {
        ps3rt_encoder_options known;
        uint64_t newer_field;
    } newer;
    memset(&newer, 0xab, sizeof newer);
    CHECK_OK(ps3rt_encoder_options_init(&newer.known, sizeof newer));
    CHECK(newer.known.struct_size == sizeof newer && newer.newer_field == 0 && newer.known.steps == 1);
}

static void test_log_callback(log_counter* counter) {
    CHECK_FAILS(ps3rt_set_log_callback(count_logs, counter, 9), PS3RT_STATUS_INVALID_ARGUMENT,
                "max_level 9");
    CHECK_OK(ps3rt_set_log_callback(count_logs, counter, PS3RT_LOG_LEVEL_INFO));
}

static void test_model_load_errors(void) {
    ps3rt_model* sentinel = (ps3rt_model*)(uintptr_t)0x1234;
    ps3rt_model* m = sentinel;
    ps3rt_model_options o = ps3rt_model_default_options();

    CHECK_FAILS(ps3rt_model_load(NULL, NULL, &m), PS3RT_STATUS_INVALID_ARGUMENT,
                "ps3rt_model_load: path is NULL");
    CHECK_FAILS(ps3rt_model_load("", NULL, &m), PS3RT_STATUS_INVALID_ARGUMENT, "path is empty");
    CHECK_FAILS(ps3rt_model_load("/nonexistent/ps3rt-package", NULL, &m), PS3RT_STATUS_IO,
                "/nonexistent/ps3rt-package");
    CHECK_FAILS(ps3rt_model_load("/dev/null", NULL, &m), PS3RT_STATUS_PACKAGE, "not a directory");
    CHECK_FAILS(ps3rt_model_load_embedded(NULL, NULL), PS3RT_STATUS_INVALID_ARGUMENT,
                "model (the out-parameter) is NULL");
    o.backend = 7;
    CHECK_FAILS(ps3rt_model_load_embedded(&o, &m), PS3RT_STATUS_INVALID_ARGUMENT, "backend 7");
    o = ps3rt_model_default_options();
    o.struct_size = 0;
    CHECK_FAILS(ps3rt_model_load_embedded(&o, &m), PS3RT_STATUS_INVALID_ARGUMENT,
                "struct_size is 0");
    o.struct_size = sizeof o - 1;
    CHECK_FAILS(ps3rt_model_load_embedded(&o, &m), PS3RT_STATUS_INVALID_ARGUMENT, "smaller");
    struct {
        ps3rt_model_options known;
        uint32_t newer_field;
        uint32_t pad;
    } newer;
    CHECK_OK(ps3rt_model_options_init(&newer.known, sizeof newer));
    newer.newer_field = 1; /* set a field this library does not know: refused, not ignored */
    CHECK_FAILS(ps3rt_model_load_embedded(&newer.known, &m), PS3RT_STATUS_INVALID_ARGUMENT,
                "newer ps3rt.h");
    CHECK(m == sentinel); /* out-parameters are written only on success */
}

static void test_model(ps3rt_model* model, const char* package_dir) {
    const ps3rt_model_info* info = NULL;
    CHECK_OK(ps3rt_model_get_info(model, &info));
    if (info == NULL) return;
    CHECK(strcmp(info->name, "ps3-tiny-4k") == 0);
    CHECK(strcmp(info->backend, "tract") == 0);
    CHECK(info->width == 32 && info->patch == 14 && info->lowres_size == 378);
    CHECK(info->high_scale_count == 3 && info->high_scales[0] == 756 &&
          info->high_scales[1] == 1512 && info->high_scales[2] == 3780);
    CHECK(info->input_size == 3780 && info->total_high_patches == 87480);
    CHECK(info->default_budget > 0 && info->package_bytes > 0);
    if (package_dir != NULL) {
        CHECK(strcmp(info->origin, package_dir) == 0);
    } else {
        CHECK(strcmp(info->origin, "embedded:ps3-tiny-4k") == 0);
    }
    CHECK_FAILS(ps3rt_model_get_info(NULL, &info), PS3RT_STATUS_INVALID_ARGUMENT, "model is NULL");
    CHECK_FAILS(ps3rt_model_get_info(model, NULL), PS3RT_STATUS_INVALID_ARGUMENT, "info");
}

static void test_encoder_create_errors(ps3rt_model* model) {
    ps3rt_encoder* sentinel = (ps3rt_encoder*)(uintptr_t)0x5678;
    ps3rt_encoder* e = sentinel;
    ps3rt_encoder_options o = ps3rt_encoder_default_options();
    o.budget = 87481;
    CHECK_FAILS(ps3rt_encoder_create(model, &o, &e), PS3RT_STATUS_INVALID_ARGUMENT, "budget 87481");
    o.budget = 40000;
    o.steps = 3;
    CHECK_FAILS(ps3rt_encoder_create(model, &o, &e), PS3RT_STATUS_INVALID_ARGUMENT, "3 steps");
    CHECK_FAILS(ps3rt_encoder_create(NULL, NULL, &e), PS3RT_STATUS_INVALID_ARGUMENT,
                "ps3rt_encoder_create: model is NULL");
    CHECK_FAILS(ps3rt_encoder_create(model, NULL, NULL), PS3RT_STATUS_INVALID_ARGUMENT,
                "encoder (the out-parameter) is NULL");
    CHECK(e == sentinel);
}

static void test_encode_errors(ps3rt_encoder* enc, const uint8_t* rgb) {
    const ps3rt_output* sentinel = (const ps3rt_output*)(uintptr_t)0x9abc;
    const ps3rt_output* out = sentinel;
    ps3rt_frame f = frame_of(rgb, W, H, PS3RT_PIXEL_FORMAT_RGB8, 0);

    CHECK_FAILS(ps3rt_encoder_encode(NULL, &f, &out), PS3RT_STATUS_INVALID_ARGUMENT, "encoder is NULL");
    CHECK_FAILS(ps3rt_encoder_encode(enc, NULL, &out), PS3RT_STATUS_INVALID_ARGUMENT, "frame is NULL");
    CHECK_FAILS(ps3rt_encoder_encode(enc, &f, NULL), PS3RT_STATUS_INVALID_ARGUMENT, "output");
    f.format = 0;
    CHECK_FAILS(ps3rt_encoder_encode(enc, &f, &out), PS3RT_STATUS_INVALID_FRAME, "format is 0");
    f.format = 42;
    CHECK_FAILS(ps3rt_encoder_encode(enc, &f, &out), PS3RT_STATUS_INVALID_FRAME, "format 42");
    f = frame_of(rgb, W, H, PS3RT_PIXEL_FORMAT_RGB8, W * 3 - 1);
    CHECK_FAILS(ps3rt_encoder_encode(enc, &f, &out), PS3RT_STATUS_INVALID_FRAME, "stride 959");
    f = frame_of(NULL, W, H, PS3RT_PIXEL_FORMAT_RGB8, 0);
    CHECK_FAILS(ps3rt_encoder_encode(enc, &f, &out), PS3RT_STATUS_INVALID_FRAME, "planes[0] is NULL");
    f = frame_of(rgb, 0, H, PS3RT_PIXEL_FORMAT_RGB8, 0);
    CHECK_FAILS(ps3rt_encoder_encode(enc, &f, &out), PS3RT_STATUS_INVALID_FRAME, "empty");
    f = frame_of(rgb, 40000, 1, PS3RT_PIXEL_FORMAT_GRAY8, 0);
    CHECK_FAILS(ps3rt_encoder_encode(enc, &f, &out), PS3RT_STATUS_INVALID_FRAME, "largest supported");
    CHECK(out == sentinel);

    /* Handles of the wrong type are recognized. */
    CHECK_FAILS(ps3rt_encoder_encode((ps3rt_encoder*)(void*)&f, &f, &out),
                PS3RT_STATUS_INVALID_ARGUMENT, "not a live ps3rt_encoder");
}

/* Checks an output of a W x H frame and copies its features into `features` (token_count x width). */
static void check_output(const ps3rt_output* out, const ps3rt_model_info* info, float* features) {
    CHECK(out->token_count == 729 + BUDGET && out->width == info->width);
    CHECK(out->lowres_token_count == 729 && out->prob_grid == 27);
    CHECK(out->budget == BUDGET && out->steps == 1);
    CHECK(out->frame_width == W && out->frame_height == H);
    int finite = 1;
    for (size_t i = 0; i < out->token_count * out->width; i++) finite &= isfinite(out->features[i]) != 0;
    CHECK(finite);
    CHECK(out->tokens[0].scale == 378 && out->tokens[0].row == 0 && out->tokens[0].col == 0);
    CHECK(out->tokens[728].row == 26 && out->tokens[728].col == 26);
    int high_ok = 1, inside = 1;
    for (size_t i = 0; i < out->token_count; i++) {
        const ps3rt_token* t = &out->tokens[i];
        if (i >= 729) high_ok &= t->scale == 756 || t->scale == 1512 || t->scale == 3780;
        inside &= t->bbox.x >= 0 && t->bbox.y >= 0 && t->bbox.x + t->bbox.w <= W + 0.01f &&
                  t->bbox.y + t->bbox.h <= H + 0.01f && t->bbox.w > 0 && t->bbox.h > 0;
    }
    CHECK(high_ok && inside);
    int probs = 1;
    for (size_t i = 0; i < 729; i++) probs &= out->prob_map[i] > 0.0f && out->prob_map[i] < 1.0f;
    CHECK(probs);
    CHECK(out->region_count >= 1 && out->regions != NULL);
    uint32_t patches = 0;
    for (size_t i = 0; i < out->region_count; i++) {
        patches += out->regions[i].patches;
        if (i > 0) CHECK(out->regions[i].score <= out->regions[i - 1].score);
    }
    CHECK(patches == BUDGET); /* every selected patch is in exactly one region */
    CHECK(out->timings.total_ms > 0 && out->timings.lowres_ms > 0 && out->timings.hrenc_ms > 0);
    memcpy(features, out->features, out->token_count * out->width * sizeof(float));
}

static void test_encode(ps3rt_model* model, ps3rt_encoder* enc, const uint8_t* rgb) {
    const ps3rt_model_info* info = NULL;
    CHECK_OK(ps3rt_model_get_info(model, &info));
    size_t n = (729 + BUDGET) * info->width;
    float* reference = malloc(n * sizeof(float));
    const ps3rt_output* out = NULL;
    ps3rt_frame f = frame_of(rgb, W, H, PS3RT_PIXEL_FORMAT_RGB8, 0);
    CHECK_OK(ps3rt_encoder_encode(enc, &f, &out));
    if (out == NULL) {
        free(reference);
        return;
    }
    check_output(out, info, reference);
    if (quick) {
        /* Every function and error path below, without the comparison encodes. */
        float* p = malloc(info->width * sizeof(float));
        for (size_t i = 0; i < info->width; i++) p[i] = (float)i - 10.0f;
        CHECK_FAILS(ps3rt_encoder_set_prompt(enc, p, 3), PS3RT_STATUS_INVALID_ARGUMENT, "prompt has 3 values");
        CHECK_FAILS(ps3rt_encoder_set_prompt(enc, NULL, 3), PS3RT_STATUS_INVALID_ARGUMENT, "NULL");
        CHECK_OK(ps3rt_encoder_set_prompt(enc, p, info->width));
        CHECK_OK(ps3rt_encoder_set_prompt(enc, NULL, 0));
        free(p);
        free(reference);
        return;
    }

    /* The same pixels as BGR8, RGBA8 with junk alpha and padded rows, BGRA8: identical features. */
    uint8_t* bgr = malloc((size_t)W * H * 3);
    size_t stride4 = W * 4 + 12;
    uint8_t* rgba = malloc(stride4 * H);
    uint8_t* bgra = malloc((size_t)W * H * 4);
    for (size_t i = 0; i < (size_t)W * H; i++) {
        const uint8_t* p = rgb + 3 * i;
        bgr[3 * i] = p[2], bgr[3 * i + 1] = p[1], bgr[3 * i + 2] = p[0];
        uint8_t* q = rgba + (i / W) * stride4 + 4 * (i % W);
        q[0] = p[0], q[1] = p[1], q[2] = p[2], q[3] = (uint8_t)(i * 13);
        bgra[4 * i] = p[2], bgra[4 * i + 1] = p[1], bgra[4 * i + 2] = p[0], bgra[4 * i + 3] = 255;
    }
    const ps3rt_frame variants[3] = {frame_of(bgr, W, H, PS3RT_PIXEL_FORMAT_BGR8, 0),
                                     frame_of(rgba, W, H, PS3RT_PIXEL_FORMAT_RGBA8, stride4),
                                     frame_of(bgra, W, H, PS3RT_PIXEL_FORMAT_BGRA8, W * 4)};
    for (int v = 0; v < 3; v++) {
        const ps3rt_output* o = NULL;
        CHECK_OK(ps3rt_encoder_encode(enc, &variants[v], &o));
        CHECK(o != NULL && o->token_count == 729 + BUDGET && same_floats(o->features, reference, n));
    }
    uint8_t* gray = malloc((size_t)W * H);
    for (size_t i = 0; i < (size_t)W * H; i++) gray[i] = rgb[3 * i + 1];
    f = frame_of(gray, W, H, PS3RT_PIXEL_FORMAT_GRAY8, 0);
    CHECK_OK(ps3rt_encoder_encode(enc, &f, &out));
    CHECK(out->frame_width == W && out->token_count == 729 + BUDGET);

    /* Top-down prompts. */
    float* prompt = calloc(info->width, sizeof(float));
    CHECK_FAILS(ps3rt_encoder_set_prompt(enc, prompt, info->width), PS3RT_STATUS_INVALID_ARGUMENT,
                "not all zero");
    CHECK_FAILS(ps3rt_encoder_set_prompt(enc, prompt, info->width - 1),
                PS3RT_STATUS_INVALID_ARGUMENT, "prompt has 31 values");
    CHECK_FAILS(ps3rt_encoder_set_prompt(enc, NULL, info->width), PS3RT_STATUS_INVALID_ARGUMENT,
                "prompt is NULL but its length is 32");
    CHECK_FAILS(ps3rt_encoder_set_prompt(enc, prompt, 0), PS3RT_STATUS_INVALID_ARGUMENT,
                "prompt length is 0");
    CHECK_FAILS(ps3rt_encoder_set_prompt(NULL, NULL, 0), PS3RT_STATUS_INVALID_ARGUMENT, "encoder is NULL");
    for (size_t i = 0; i < info->width; i++) prompt[i] = (float)((i % 5) - 2.0);
    prompt[3] = NAN;
    CHECK_FAILS(ps3rt_encoder_set_prompt(enc, prompt, info->width), PS3RT_STATUS_INVALID_ARGUMENT,
                "finite");
    prompt[3] = 0.5f;
    CHECK_OK(ps3rt_encoder_set_prompt(enc, prompt, info->width));
    float* top_down = malloc(729 * sizeof(float));
    f = frame_of(rgb, W, H, PS3RT_PIXEL_FORMAT_RGB8, 0);
    CHECK_OK(ps3rt_encoder_encode(enc, &f, &out));
    memcpy(top_down, out->prob_map, 729 * sizeof(float));
    CHECK_OK(ps3rt_encoder_set_prompt(enc, NULL, 0));
    CHECK_OK(ps3rt_encoder_encode(enc, &f, &out));
    CHECK(!same_floats(top_down, out->prob_map, 729)); /* the prompt changed the map */
    CHECK(same_floats(out->features, reference, n));   /* and restoring the prior restores it */

    free(top_down);
    free(prompt);
    free(gray);
    free(bgra);
    free(rgba);
    free(bgr);
    free(reference);
}

/* An NV12 frame in two separate, padded planes: full-range luma with neutral chroma is gray, so it
   gives exactly the features of the luma encoded as GRAY8. */
static void test_encode_yuv(ps3rt_encoder* enc, const uint8_t* rgb) {
    const size_t y_stride = W + 16, uv_stride = W + 8, cw = (W + 1) / 2, ch = (H + 1) / 2;
    uint8_t* y = malloc(y_stride * H);
    uint8_t* uv = malloc(uv_stride * ch);
    uint8_t* gray = malloc((size_t)W * H);
    memset(y, 0, y_stride * H);
    memset(uv, 128, uv_stride * ch);
    for (size_t r = 0; r < H; r++)
        for (size_t c = 0; c < W; c++) y[r * y_stride + c] = gray[r * W + c] = rgb[3 * (r * W + c)];
    const ps3rt_output* out = NULL;
    ps3rt_frame g = frame_of(gray, W, H, PS3RT_PIXEL_FORMAT_GRAY8, 0);
    CHECK_OK(ps3rt_encoder_encode(enc, &g, &out));
    size_t n = out ? (size_t)out->token_count * out->width : 0;
    float* reference = malloc(n * sizeof(float));
    if (out) memcpy(reference, out->features, n * sizeof(float));

    ps3rt_frame f = frame_of(y, W, H, PS3RT_PIXEL_FORMAT_NV12, y_stride);
    CHECK_FAILS(ps3rt_encoder_encode(enc, &f, &out), PS3RT_STATUS_INVALID_FRAME, "planes[1] is NULL");
    f.planes[1] = uv;
    f.strides[1] = 2 * cw - 1;
    CHECK_FAILS(ps3rt_encoder_encode(enc, &f, &out), PS3RT_STATUS_INVALID_FRAME, "chroma plane stride");
    f.strides[1] = uv_stride;
    CHECK_FAILS(ps3rt_encoder_set_yuv_color(enc, 7, PS3RT_YUV_RANGE_FULL), PS3RT_STATUS_INVALID_ARGUMENT,
                "matrix 7");
    CHECK_OK(ps3rt_encoder_set_yuv_color(enc, PS3RT_YUV_MATRIX_BT601, PS3RT_YUV_RANGE_FULL));
    out = NULL;
    CHECK_OK(ps3rt_encoder_encode(enc, &f, &out));
    CHECK(out != NULL && same_floats(out->features, reference, n));
    /* Limited range (the default) stretches the luma: other features. */
    CHECK_OK(ps3rt_encoder_set_yuv_color(enc, PS3RT_YUV_MATRIX_BT601, PS3RT_YUV_RANGE_LIMITED));
    CHECK_OK(ps3rt_encoder_encode(enc, &f, &out));
    CHECK(out != NULL && !same_floats(out->features, reference, n));

    /* Resampling on the CPU (a negative device) always works; a GPU either works or fails naming
     * what is missing, and the encoder goes on where it was. */
    CHECK_OK(ps3rt_encoder_set_preprocess(enc, -1));
    ps3rt_status gpu_status = ps3rt_encoder_set_preprocess(enc, 0);
    CHECK(gpu_status == PS3RT_STATUS_OK ||
          (gpu_status == PS3RT_STATUS_BACKEND && strstr(ps3rt_last_error(), "cuda") != NULL));
    CHECK_FAILS(ps3rt_encoder_set_preprocess(enc, 1000), PS3RT_STATUS_BACKEND, "cuda");
    CHECK_OK(ps3rt_encoder_encode(enc, &f, &out));
    CHECK(out != NULL && out->token_count > 0);
    CHECK_OK(ps3rt_encoder_set_preprocess(enc, -1));

    /* The same NV12 frame in page-locked memory from ps3rt_pinned_alloc: the same features on the
     * CPU, the same selection on the GPU (one DMA instead of locking the pages); without a GPU the
     * allocation fails naming CUDA. */
    uint8_t* pinned = NULL;
    CHECK_FAILS(ps3rt_pinned_alloc(0, 0, &pinned), PS3RT_STATUS_INVALID_ARGUMENT, "bytes is 0");
    CHECK_FAILS(ps3rt_pinned_alloc(-1, 64, &pinned), PS3RT_STATUS_INVALID_ARGUMENT, "negative");
    CHECK_FAILS(ps3rt_pinned_alloc(0, 64, NULL), PS3RT_STATUS_INVALID_ARGUMENT, "data");
    CHECK_FAILS(ps3rt_pinned_free(y), PS3RT_STATUS_INVALID_ARGUMENT, "not the start of a live");
    CHECK_OK(ps3rt_pinned_free(NULL));
    CHECK(pinned == NULL);
    const size_t y_bytes = y_stride * H, pinned_bytes = y_bytes + uv_stride * ch;
    ps3rt_status pinned_status = ps3rt_pinned_alloc(0, pinned_bytes, &pinned);
    CHECK(pinned_status == PS3RT_STATUS_OK || pinned_status == PS3RT_STATUS_UNSUPPORTED ||
          (pinned_status == PS3RT_STATUS_BACKEND && strstr(ps3rt_last_error(), "cuda") != NULL));
    if (pinned_status == PS3RT_STATUS_OK && pinned != NULL) {
        CHECK(pinned[0] == 0 && pinned[pinned_bytes - 1] == 0); /* zeroed */
        memcpy(pinned, y, y_bytes);
        memcpy(pinned + y_bytes, uv, uv_stride * ch);
        ps3rt_frame p = f;
        p.planes[0] = pinned;
        p.planes[1] = pinned + y_bytes;
        CHECK_OK(ps3rt_encoder_encode(enc, &f, &out));
        size_t count = out ? out->token_count : 0, m = out ? (size_t)out->token_count * out->width : 0;
        float* pageable = malloc(m * sizeof(float));
        ps3rt_token* tokens = malloc(count * sizeof(ps3rt_token));
        if (out) {
            memcpy(pageable, out->features, m * sizeof(float));
            memcpy(tokens, out->tokens, count * sizeof(ps3rt_token));
        }
        CHECK_OK(ps3rt_encoder_encode(enc, &p, &out));
        CHECK(out != NULL && same_floats(out->features, pageable, m));
        if (gpu_status == PS3RT_STATUS_OK) {
            CHECK_OK(ps3rt_encoder_set_preprocess(enc, 0));
            CHECK_OK(ps3rt_encoder_encode(enc, &p, &out));
            CHECK(out != NULL && out->token_count == count);
            size_t same = 0;
            for (size_t i = 0; out && i < count && i < out->token_count; i++)
                same += out->tokens[i].scale == tokens[i].scale && out->tokens[i].row == tokens[i].row &&
                        out->tokens[i].col == tokens[i].col;
            CHECK(same == count);
            CHECK_OK(ps3rt_encoder_set_preprocess(enc, -1));
        }
        free(tokens);
        free(pageable);
        CHECK_OK(ps3rt_pinned_free(pinned));
        CHECK_FAILS(ps3rt_pinned_free(pinned), PS3RT_STATUS_INVALID_ARGUMENT, "already freed");
    }

    const uint8_t not_jpeg[] = {0xFF, 0xD8, 0x00, 0x01, 0x02};
    CHECK_FAILS(ps3rt_encoder_encode_jpeg(enc, not_jpeg, sizeof not_jpeg, &out),
                PS3RT_STATUS_INVALID_FRAME, "MJPEG");
    CHECK_FAILS(ps3rt_encoder_encode_jpeg(enc, NULL, 10, &out), PS3RT_STATUS_INVALID_ARGUMENT,
                "data is NULL");
    free(reference);
    free(gray);
    free(uv);
    free(y);
}

/* Called after the model handle was destroyed: the encoder keeps the model alive. */
static void test_encode_tensor(ps3rt_encoder* enc, size_t side) {
    size_t plane = side * side;
    float* t = malloc(3 * plane * sizeof(float));
    for (size_t c = 0; c < 3; c++) {
        for (size_t i = 0; i < plane; i++) t[c * plane + i] = (float)((i / side / 90 + i % side / 90 + c) % 7) / 3.0f - 1.0f;
    }
    const ps3rt_output* out = NULL;
    CHECK_FAILS(ps3rt_encoder_encode_tensor(enc, NULL, side, &out), PS3RT_STATUS_INVALID_ARGUMENT,
                "tensor is NULL");
    CHECK_FAILS(ps3rt_encoder_encode_tensor(enc, t, 0, &out), PS3RT_STATUS_INVALID_FRAME, "tensor side 0");
    CHECK_FAILS(ps3rt_encoder_encode_tensor(enc, t, 100, &out), PS3RT_STATUS_INVALID_FRAME, "100");
    CHECK_FAILS(ps3rt_encoder_encode_tensor(enc, t, side, NULL), PS3RT_STATUS_INVALID_ARGUMENT, "output");
    t[plane + 5 * side + 7] = INFINITY;
    CHECK_FAILS(ps3rt_encoder_encode_tensor(enc, t, side, &out), PS3RT_STATUS_INVALID_FRAME, "[1, 5, 7]");
    t[plane + 5 * side + 7] = 0.0f;
    CHECK(out == NULL);
    CHECK_OK(ps3rt_encoder_encode_tensor(enc, t, side, &out));
    if (out != NULL) {
        CHECK(out->token_count == 729 + 2 * 16 && out->steps == 2 && out->budget == 16);
        CHECK(out->frame_width == side && out->frame_height == side);
    }
    free(t);
}

int main(int argc, char** argv) {
    int arg = 1;
    if (arg < argc && strcmp(argv[arg], "--quick") == 0) quick = 1, arg++;
    const char* package_dir = arg < argc ? argv[arg] : NULL;
    log_counter logs = {0, 0, PS3RT_STATUS_OK};

    test_versions_and_strings();
    test_options();
    test_log_callback(&logs);
    test_model_load_errors();

    ps3rt_model_options mo = ps3rt_model_default_options();
    mo.threads = 2;
    ps3rt_model* model = NULL;
    CHECK_OK(ps3rt_model_load_embedded(&mo, &model));
    CHECK(logs.saw_backend_choice); /* the backend choice arrived through the callback */
    CHECK(logs.nested == PS3RT_STATUS_BUSY); /* replacing the callback from inside it is refused */
    CHECK_OK(ps3rt_set_log_callback(NULL, NULL, PS3RT_LOG_LEVEL_OFF));
    int calls = logs.calls;
    if (model == NULL) return check_summary("api_test");
    test_model(model, NULL);

    if (package_dir != NULL) {
        ps3rt_model* from_dir = NULL;
        CHECK_OK(ps3rt_model_load(package_dir, &mo, &from_dir));
        if (from_dir != NULL) test_model(from_dir, package_dir);
        ps3rt_model_destroy(from_dir);
    }
    CHECK(logs.calls == calls); /* no callback after it was removed */

    test_encoder_create_errors(model);
    ps3rt_encoder_options eo = ps3rt_encoder_default_options();
    eo.budget = BUDGET;
    ps3rt_encoder* enc = NULL;
    CHECK_OK(ps3rt_encoder_create(model, &eo, &enc));
    CHECK_FAILS(ps3rt_model_get_info((const ps3rt_model*)(const void*)enc, NULL),
                PS3RT_STATUS_INVALID_ARGUMENT, "not a live ps3rt_model");

    uint8_t* rgb = malloc((size_t)W * H * 3);
    fill_rgb(rgb, W, H);
    if (enc != NULL) {
        test_encode_errors(enc, rgb);
        test_encode(model, enc, rgb);
        test_encode_yuv(enc, rgb);
    }
    ps3rt_encoder_options to = ps3rt_encoder_default_options();
    to.budget = 16;
    to.steps = 2;
    ps3rt_encoder* tensor_enc = NULL;
    CHECK_OK(ps3rt_encoder_create(model, &to, &tensor_enc));
    size_t side = 0;
    const ps3rt_model_info* info = NULL;
    CHECK_OK(ps3rt_model_get_info(model, &info));
    if (info != NULL) side = info->input_size;

    /* The model handle may go first: the encoders keep their own reference. */
    ps3rt_model_destroy(model);
    if (tensor_enc != NULL) test_encode_tensor(tensor_enc, side);
    ps3rt_encoder_destroy(tensor_enc);
    if (!quick) {
        const ps3rt_output* out = NULL;
        ps3rt_frame f = frame_of(rgb, W, H, PS3RT_PIXEL_FORMAT_RGB8, 0);
        CHECK_OK(ps3rt_encoder_encode(enc, &f, &out));
        CHECK(out != NULL && out->token_count == 729 + BUDGET);
    }
    ps3rt_encoder_destroy(enc);

    /* Destroy accepts NULL. */
    ps3rt_encoder_destroy(NULL);
    ps3rt_model_destroy(NULL);

    /* The last error is per thread and names the function. */
    CHECK_FAILS(ps3rt_encoder_create(NULL, NULL, NULL), PS3RT_STATUS_INVALID_ARGUMENT,
                "ps3rt_encoder_create:");
    CHECK(strncmp(ps3rt_last_error(), "ps3rt_encoder_create: ", 22) == 0);
    CHECK_OK(ps3rt_encoder_options_init(&eo, sizeof eo));
    CHECK(strncmp(ps3rt_last_error(), "ps3rt_encoder_create: ", 22) == 0); /* kept on success */

    free(rgb);
    return check_summary("api_test");
}
