/*
 * Bad calls of the C API (docs/reliability.md): NULL in every pointer position of every function,
 * handles of the wrong type (refused, not freed), destroy of NULL, an empty JPEG; and frames whose
 * planes end right before an unreadable guard page, for every pixel format with odd sizes and
 * padded strides: ps3rt reads exactly the bytes docs/c-api.md says a description covers (one byte
 * more would crash this test).
 *
 *   robustness_test [--quick]      (--quick, for valgrind: no encodes)
 *
 * What C cannot check is stated in docs/reliability.md: a buffer shorter than its description, or a
 * handle used after it was destroyed, is the caller's undefined behaviour; a destroyed handle is
 * refused only while its memory has not been reused, so this test never uses one.
 */
#define _DEFAULT_SOURCE /* mmap flags under -std=c11 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "ps3rt.h"

static void test_nulls(ps3rt_model* model, ps3rt_encoder* enc) {
    ps3rt_model_options mo = ps3rt_model_default_options();
    ps3rt_encoder_options eo = ps3rt_encoder_default_options();
    ps3rt_model* m = NULL;
    ps3rt_encoder* e = NULL;
    const ps3rt_model_info* info = NULL;
    const ps3rt_output* out = NULL;
    ps3rt_frame f;
    memset(&f, 0, sizeof f);
    f.width = 4, f.height = 4, f.format = PS3RT_PIXEL_FORMAT_GRAY8;
    const float one = 1.0f;
    const uint8_t byte = 0;
    const ps3rt_status bad = PS3RT_STATUS_INVALID_ARGUMENT;

    CHECK_FAILS(ps3rt_model_options_init(NULL, sizeof mo), bad, "ps3rt_model_options_init: options is NULL");
    CHECK_FAILS(ps3rt_encoder_options_init(NULL, sizeof eo), bad, "ps3rt_encoder_options_init: options is NULL");
    CHECK_FAILS(ps3rt_model_load(NULL, &mo, &m), bad, "ps3rt_model_load: path is NULL");
    CHECK_FAILS(ps3rt_model_load("/nonexistent", &mo, NULL), bad, "model (the out-parameter) is NULL");
    CHECK_FAILS(ps3rt_model_load_embedded(&mo, NULL), bad, "ps3rt_model_load_embedded: model (the out-parameter) is NULL");
    CHECK_FAILS(ps3rt_model_get_info(NULL, &info), bad, "ps3rt_model_get_info: model is NULL");
    CHECK_FAILS(ps3rt_model_get_info(model, NULL), bad, "info (the out-parameter) is NULL");
    CHECK_FAILS(ps3rt_encoder_create(NULL, &eo, &e), bad, "ps3rt_encoder_create: model is NULL");
    CHECK_FAILS(ps3rt_encoder_create(model, &eo, NULL), bad, "encoder (the out-parameter) is NULL");
    CHECK_FAILS(ps3rt_encoder_set_prompt(NULL, &one, 1), bad, "ps3rt_encoder_set_prompt: encoder is NULL");
    CHECK_FAILS(ps3rt_encoder_set_prompt(enc, NULL, 32), bad, "prompt is NULL but its length is 32");
    CHECK_FAILS(ps3rt_encoder_encode(NULL, &f, &out), bad, "ps3rt_encoder_encode: encoder is NULL");
    CHECK_FAILS(ps3rt_encoder_encode(enc, NULL, &out), bad, "ps3rt_encoder_encode: frame is NULL");
    CHECK_FAILS(ps3rt_encoder_encode(enc, &f, NULL), bad, "output (the out-parameter) is NULL");
    CHECK_FAILS(ps3rt_encoder_encode(enc, &f, &out), PS3RT_STATUS_INVALID_FRAME, "planes[0] is NULL");
    CHECK_FAILS(ps3rt_encoder_encode_tensor(NULL, &one, 1, &out), bad, "ps3rt_encoder_encode_tensor: encoder is NULL");
    CHECK_FAILS(ps3rt_encoder_encode_tensor(enc, NULL, 3780, &out), bad, "tensor is NULL");
    CHECK_FAILS(ps3rt_encoder_encode_tensor(enc, &one, 1, NULL), bad, "output (the out-parameter) is NULL");
    CHECK_FAILS(ps3rt_encoder_set_yuv_color(NULL, 0, 0), bad, "ps3rt_encoder_set_yuv_color: encoder is NULL");
    CHECK_FAILS(ps3rt_encoder_set_preprocess(NULL, 0), bad, "ps3rt_encoder_set_preprocess: encoder is NULL");
    CHECK_FAILS(ps3rt_encoder_encode_jpeg(NULL, &byte, 1, &out), bad, "ps3rt_encoder_encode_jpeg: encoder is NULL");
    CHECK_FAILS(ps3rt_encoder_encode_jpeg(enc, NULL, 10, &out), bad, "data is NULL but its length is 10");
    CHECK_FAILS(ps3rt_encoder_encode_jpeg(enc, &byte, 1, NULL), bad, "output (the out-parameter) is NULL");
    CHECK_FAILS(ps3rt_encoder_encode_jpeg(enc, &byte, 0, &out), PS3RT_STATUS_INVALID_FRAME,
                "the JPEG is empty (length 0)");
    CHECK_OK(ps3rt_set_log_callback(NULL, NULL, PS3RT_LOG_LEVEL_INFO)); /* NULL: logging off */
    CHECK(ps3rt_status_string(-1) != NULL && ps3rt_last_error() != NULL && ps3rt_version() != NULL);
    ps3rt_encoder_destroy(NULL);
    ps3rt_model_destroy(NULL);
    CHECK(m == NULL && e == NULL && info == NULL && out == NULL); /* no out-parameter written */
}

/* A handle of the other type passed to a destroy function is refused by its type tag and not
   freed: both handles stay usable. (Destroying one handle twice is undefined behaviour; ps3rt clears
   the tag on destroy, so a second destroy is refused only while the freed memory is not reused.) */
static void test_destroy_wrong_type(ps3rt_model* model, ps3rt_encoder* enc) {
    ps3rt_encoder_destroy((ps3rt_encoder*)(void*)model);
    CHECK(strstr(ps3rt_last_error(), "ps3rt_encoder_destroy: encoder is not a live ps3rt_encoder") != NULL);
    ps3rt_model_destroy((ps3rt_model*)(void*)enc);
    CHECK(strstr(ps3rt_last_error(), "ps3rt_model_destroy: model is not a live ps3rt_model") != NULL);
    const ps3rt_model_info* info = NULL;
    CHECK_OK(ps3rt_model_get_info(model, &info));
    CHECK_OK(ps3rt_encoder_set_yuv_color(enc, PS3RT_YUV_MATRIX_BT709, PS3RT_YUV_RANGE_FULL));
}

/* `len` bytes ending right before a PROT_NONE page; `*base`/`*total` for munmap. */
static uint8_t* guarded(size_t len, void** base, size_t* total) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (len + page - 1) / page;
    *total = (pages + 1) * page;
    uint8_t* p = mmap(NULL, *total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    if (mprotect(p + pages * page, page, PROT_NONE) != 0) return NULL;
    *base = p;
    uint8_t* data = p + pages * page - len;
    for (size_t i = 0; i < len; i++) data[i] = (uint8_t)(i * 29 + 7);
    return data;
}

/* Row bytes and rows of plane `p`, from the table in docs/c-api.md (0 rows: no such plane). */
static void plane_layout(int32_t format, int p, uint32_t w, uint32_t h, size_t* row, size_t* rows) {
    size_t hw = (w + 1) / 2, hh = (h + 1) / 2;
    *rows = 0;
    switch (format) {
    case PS3RT_PIXEL_FORMAT_RGB8:
    case PS3RT_PIXEL_FORMAT_BGR8: if (p == 0) *row = 3 * (size_t)w, *rows = h; break;
    case PS3RT_PIXEL_FORMAT_RGBA8:
    case PS3RT_PIXEL_FORMAT_BGRA8: if (p == 0) *row = 4 * (size_t)w, *rows = h; break;
    case PS3RT_PIXEL_FORMAT_GRAY8: if (p == 0) *row = w, *rows = h; break;
    case PS3RT_PIXEL_FORMAT_YUYV:
    case PS3RT_PIXEL_FORMAT_UYVY: if (p == 0) *row = 4 * hw, *rows = h; break;
    case PS3RT_PIXEL_FORMAT_NV12:
    case PS3RT_PIXEL_FORMAT_NV21:
        if (p == 0) *row = w, *rows = h;
        if (p == 1) *row = 2 * hw, *rows = hh;
        break;
    case PS3RT_PIXEL_FORMAT_I420:
        if (p == 0) *row = w, *rows = h;
        if (p == 1 || p == 2) *row = hw, *rows = hh;
        break;
    default: break;
    }
}

static void test_guarded_planes(ps3rt_encoder* enc) {
    const uint32_t sizes[3][2] = {{33, 17}, {1, 1}, {640, 3}};
    int encoded = 0;
    for (int32_t format = PS3RT_PIXEL_FORMAT_RGB8; format <= PS3RT_PIXEL_FORMAT_I420; format++) {
        for (int s = 0; s < 3; s++) {
            for (int padded = 0; padded < 2; padded++) {
                uint32_t w = sizes[s][0], h = sizes[s][1];
                ps3rt_frame f;
                memset(&f, 0, sizeof f);
                f.width = w, f.height = h, f.format = format;
                void* bases[PS3RT_MAX_PLANES] = {0};
                size_t totals[PS3RT_MAX_PLANES] = {0};
                for (int p = 0; p < PS3RT_MAX_PLANES; p++) {
                    size_t row = 0, rows = 0;
                    plane_layout(format, p, w, h, &row, &rows);
                    if (rows == 0) {
                        f.planes[p] = (const uint8_t*)(uintptr_t)1; /* unused: never read */
                        continue;
                    }
                    size_t stride = padded ? row + 5 : 0;
                    size_t len = (padded ? stride : row) * (rows - 1) + row; /* last row unpadded */
                    f.strides[p] = stride;
                    f.planes[p] = guarded(len, &bases[p], &totals[p]);
                }
                const ps3rt_output* out = NULL;
                ps3rt_status status = ps3rt_encoder_encode(enc, &f, &out);
                CHECK_OK(status);
                if (status == PS3RT_STATUS_OK) {
                    CHECK(out->frame_width == w && out->frame_height == h);
                    encoded++;
                } else {
                    fprintf(stderr, "format %d %ux%u padded %d: %s\n", format, w, h, padded, ps3rt_last_error());
                }
                for (int p = 0; p < PS3RT_MAX_PLANES; p++)
                    if (bases[p] != NULL) munmap(bases[p], totals[p]);
            }
        }
    }
    CHECK(encoded == 10 * 3 * 2);
}

int main(int argc, char** argv) {
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    ps3rt_model_options mo = ps3rt_model_default_options();
    mo.threads = 2;
    ps3rt_model* model = NULL;
    CHECK_OK(ps3rt_model_load_embedded(&mo, &model));
    ps3rt_encoder_options eo = ps3rt_encoder_default_options();
    eo.budget = 8;
    ps3rt_encoder* enc = NULL;
    if (model != NULL) CHECK_OK(ps3rt_encoder_create(model, &eo, &enc));
    if (enc == NULL) return check_summary("robustness_test");
    test_nulls(model, enc);
    test_destroy_wrong_type(model, enc);
    if (!quick) test_guarded_planes(enc);
    ps3rt_encoder_destroy(enc);
    ps3rt_model_destroy(model);
    return check_summary("robustness_test");
}
