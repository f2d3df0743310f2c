/*
 * Encode an image with the ps3rt C API and print the selected regions.
 *
 *   encode_ppm IMAGE.ppm [--budget K] [--package DIR]
 *
 * IMAGE is a binary PPM (P6, 8-bit). Without --package the tiny model compiled into the library is
 * used (random weights: the regions show the pipeline working, not a trained model's choice).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps3rt.h"

/* Reads a binary 8-bit PPM; returns malloc'ed RGB rows or NULL with a message on stderr. */
static unsigned char* read_ppm(const char* path, uint32_t* width, uint32_t* height) {
    FILE* f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return NULL;
    }
    unsigned w = 0, h = 0, maxval = 0;
    char magic[3] = {0};
    if (fscanf(f, "%2s", magic) != 1 || strcmp(magic, "P6") != 0) {
        fprintf(stderr, "%s: not a binary PPM (P6)\n", path);
        fclose(f);
        return NULL;
    }
    /* Header fields separated by whitespace, with optional # comments. */
    unsigned* fields[3] = {&w, &h, &maxval};
    for (int i = 0; i < 3; i++) {
        int c;
        while ((c = fgetc(f)) == '#' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if (c == '#') {
                while ((c = fgetc(f)) != '\n' && c != EOF) {
                }
            }
        }
        ungetc(c, f);
        if (fscanf(f, "%u", fields[i]) != 1) {
            fprintf(stderr, "%s: malformed PPM header\n", path);
            fclose(f);
            return NULL;
        }
    }
    fgetc(f); /* the single whitespace byte before the pixels */
    if (w == 0 || h == 0 || w > 32768 || h > 32768 || maxval != 255) {
        fprintf(stderr, "%s: unsupported PPM (%ux%u, maxval %u; need 8-bit, sides 1..32768)\n", path,
                w, h, maxval);
        fclose(f);
        return NULL;
    }
    size_t bytes = (size_t)w * h * 3;
    unsigned char* rgb = malloc(bytes);
    if (rgb == NULL || fread(rgb, 1, bytes, f) != bytes) {
        fprintf(stderr, "%s: truncated PPM (or out of memory)\n", path);
        free(rgb);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *width = w;
    *height = h;
    return rgb;
}

/* Print the failed call's status and message, and give the exit code 1. */
static int fail(const char* what, ps3rt_status status) {
    fprintf(stderr, "%s failed (%s): %s\n", what, ps3rt_status_string(status), ps3rt_last_error());
    return 1;
}

static void log_to_stderr(ps3rt_log_level level, const char* message, void* user_data) {
    (void)user_data;
    fprintf(stderr, "[ps3rt %d] %s\n", (int)level, message);
}

int main(int argc, char** argv) {
    const char* image = NULL;
    const char* package = NULL;
    size_t budget = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc) {
            budget = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--package") == 0 && i + 1 < argc) {
            package = argv[++i];
        } else if (image == NULL && argv[i][0] != '-') {
            image = argv[i];
        } else {
            image = NULL;
            break;
        }
    }
    if (image == NULL) {
        fprintf(stderr, "usage: %s IMAGE.ppm [--budget K] [--package DIR]\n", argv[0]);
        return 2;
    }
    if (!PS3RT_CHECK_ABI()) {
        fprintf(stderr, "libps3rt %s implements ABI %u, this program was built for ABI %d\n",
                ps3rt_version(), ps3rt_abi_version(), PS3RT_ABI_VERSION);
        return 1;
    }
    ps3rt_set_log_callback(log_to_stderr, NULL, PS3RT_LOG_LEVEL_WARN);

    uint32_t width = 0, height = 0;
    unsigned char* rgb = read_ppm(image, &width, &height);
    if (rgb == NULL) return 1;

    int rc = 0;
    ps3rt_model* model = NULL;
    ps3rt_encoder* encoder = NULL;
    ps3rt_status s = package ? ps3rt_model_load(package, NULL, &model)
                             : ps3rt_model_load_embedded(NULL, &model);
    if (s != PS3RT_STATUS_OK) {
        rc = fail("loading the model", s);
        goto done;
    }
    const ps3rt_model_info* info = NULL;
    ps3rt_model_get_info(model, &info);

    ps3rt_encoder_options options = ps3rt_encoder_default_options();
    options.budget = budget; /* 0: the package's default */
    s = ps3rt_encoder_create(model, &options, &encoder);
    if (s != PS3RT_STATUS_OK) {
        rc = fail("creating the encoder", s);
        goto done;
    }

    ps3rt_frame frame;
    memset(&frame, 0, sizeof frame);
    frame.width = width;
    frame.height = height;
    frame.format = PS3RT_PIXEL_FORMAT_RGB8;
    frame.planes[0] = rgb;
    frame.strides[0] = 0; /* rows packed back to back */
    const ps3rt_output* out = NULL;
    s = ps3rt_encoder_encode(encoder, &frame, &out);
    if (s != PS3RT_STATUS_OK) {
        rc = fail("encoding", s);
        goto done;
    }

    /* `out` and its arrays belong to the encoder and stay valid until its next encode. */
    printf("model    %s (%s, backend %s), ps3rt %s\n", info->name, info->origin, info->backend,
           ps3rt_version());
    printf("frame    %s: %ux%u rgb8\n", image, width, height);
    printf("features %zu tokens x %zu (%zu low-res + %zu steps x K = %zu)\n", out->token_count,
           out->width, out->lowres_token_count, out->steps, out->budget);
    printf("timing   total %.1f ms: preprocess %.1f, lowres %.1f, hrsel %.1f, select %.1f, "
           "gather %.1f, hrenc %.1f\n",
           out->timings.total_ms, out->timings.preprocess_ms, out->timings.lowres_ms,
           out->timings.hrsel_ms, out->timings.select_ms, out->timings.gather_ms,
           out->timings.hrenc_ms);
    printf("regions  %zu groups of adjacent selected patches; best:\n", out->region_count);
    for (size_t i = 0; i < out->region_count && i < 10; i++) {
        const ps3rt_region* r = &out->regions[i];
        printf("  %2zu. %4u px  x %6.0f y %6.0f w %5.0f h %5.0f  score %.3f  %u patches\n", i + 1,
               r->scale, r->bbox.x, r->bbox.y, r->bbox.w, r->bbox.h, r->score, r->patches);
    }

done:
    ps3rt_encoder_destroy(encoder);
    ps3rt_model_destroy(model);
    ps3rt_set_log_callback(NULL, NULL, PS3RT_LOG_LEVEL_OFF);
    free(rgb);
    return rc;
}
