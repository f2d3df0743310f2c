/*
 * Threads: N encoders sharing one model encode concurrently and get exactly the features a single
 * encoder gets for the same frames; concurrent calls on one encoder are refused with
 * PS3RT_STATUS_BUSY (never a crash or a torn result); the log callback is replaced while other
 * threads log; the last error is per thread.
 *
 *   threads_test [THREADS] [FRAMES_PER_THREAD]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ps3rt.h"

#define W 256
#define H 144
#define BUDGET 24
#define MAX_THREADS 16

static ps3rt_model* model;
static size_t feature_count;
static float* reference[MAX_THREADS]; /* features of frame i from one encoder, serially */

static void fill(uint8_t* rgb, int seed) {
    for (uint32_t y = 0; y < H; y++) {
        for (uint32_t x = 0; x < W; x++) {
            uint8_t* p = rgb + 3 * ((size_t)y * W + x);
            p[0] = (uint8_t)(x * (3 + seed) + y);
            p[1] = (uint8_t)(((x / (8 + seed) + y / 8) & 1) ? 220 : 30);
            p[2] = (uint8_t)(y * (5 + seed));
        }
    }
}

static ps3rt_frame frame_of(const uint8_t* rgb) {
    ps3rt_frame f;
    memset(&f, 0, sizeof f);
    f.width = W;
    f.height = H;
    f.format = PS3RT_PIXEL_FORMAT_RGB8;
    f.planes[0] = rgb;
    return f;
}

typedef struct {
    int index;
    int frames;
    int mismatches;
    int failures;
} worker_args;

/* Each worker owns an encoder; it encodes its frames (the frame of index `index + k`). */
static void* worker(void* arg) {
    worker_args* a = (worker_args*)arg;
    ps3rt_encoder_options o = ps3rt_encoder_default_options();
    o.budget = BUDGET;
    ps3rt_encoder* enc = NULL;
    if (ps3rt_encoder_create(model, &o, &enc) != PS3RT_STATUS_OK) {
        a->failures++;
        return NULL;
    }
    uint8_t* rgb = malloc((size_t)W * H * 3);
    for (int k = 0; k < a->frames; k++) {
        int which = (a->index + k) % MAX_THREADS;
        fill(rgb, which);
        ps3rt_frame f = frame_of(rgb);
        const ps3rt_output* out = NULL;
        if (ps3rt_encoder_encode(enc, &f, &out) != PS3RT_STATUS_OK) {
            a->failures++;
            continue;
        }
        if (out->token_count * out->width != feature_count ||
            memcmp(out->features, reference[which], feature_count * sizeof(float)) != 0) {
            a->mismatches++;
        }
    }
    /* The last error is per thread: a failure here is not seen by the other threads. */
    if (ps3rt_encoder_set_prompt(enc, NULL, 5) == PS3RT_STATUS_OK ||
        strstr(ps3rt_last_error(), "ps3rt_encoder_set_prompt") == NULL) {
        a->failures++;
    }
    free(rgb);
    ps3rt_encoder_destroy(enc);
    return NULL;
}

static ps3rt_encoder* shared_encoder;
static atomic_int start_flag;
static atomic_int ok_count, busy_count, other_count;

/* Two threads call one encoder at once: each call either runs alone or is refused as busy. */
static void* contender(void* arg) {
    const uint8_t* rgb = (const uint8_t*)arg;
    ps3rt_frame f = frame_of(rgb);
    while (!atomic_load(&start_flag)) {
    }
    for (int k = 0; k < 6; k++) {
        const ps3rt_output* out = NULL;
        ps3rt_status s = ps3rt_encoder_encode(shared_encoder, &f, &out);
        if (s == PS3RT_STATUS_OK) {
            atomic_fetch_add(&ok_count, 1);
        } else if (s == PS3RT_STATUS_BUSY && strstr(ps3rt_last_error(), "in use by another thread")) {
            atomic_fetch_add(&busy_count, 1);
        } else {
            atomic_fetch_add(&other_count, 1);
        }
    }
    return NULL;
}

static atomic_int log_calls[2];

static void log_a(ps3rt_log_level level, const char* message, void* user) {
    (void)level, (void)message;
    atomic_fetch_add((atomic_int*)user, 1);
}

static atomic_int stop_swapping;

/* Replaces the log callback over and over while other threads load models (which logs). */
static void* swapper(void* arg) {
    (void)arg;
    int i = 0;
    while (!atomic_load(&stop_swapping)) {
        ps3rt_set_log_callback(i % 3 == 2 ? NULL : log_a, &log_calls[i % 2], PS3RT_LOG_LEVEL_TRACE);
        i++;
    }
    return NULL;
}

static void* loader(void* arg) {
    (void)arg;
    for (int k = 0; k < 2; k++) {
        ps3rt_model* m = NULL;
        if (ps3rt_model_load_embedded(NULL, &m) == PS3RT_STATUS_OK) {
            ps3rt_model_destroy(m);
        } else {
            atomic_fetch_add(&other_count, 1);
        }
    }
    return NULL;
}

int main(int argc, char** argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    int frames = argc > 2 ? atoi(argv[2]) : 3;
    if (threads < 1 || threads > MAX_THREADS || frames < 1) {
        fprintf(stderr, "usage: threads_test [THREADS 1..16] [FRAMES >= 1]\n");
        return 2;
    }
    ps3rt_model_options mo = ps3rt_model_default_options();
    mo.threads = 1; /* the backend's own pool: one thread, so the encoders' threads do the work */
    CHECK_OK(ps3rt_model_load_embedded(&mo, &model));
    if (model == NULL) return check_summary("threads_test");

    /* References, serially on one encoder. */
    ps3rt_encoder_options o = ps3rt_encoder_default_options();
    o.budget = BUDGET;
    ps3rt_encoder* enc = NULL;
    CHECK_OK(ps3rt_encoder_create(model, &o, &enc));
    uint8_t* rgb = malloc((size_t)W * H * 3);
    int needed = threads + frames - 1 < MAX_THREADS ? threads + frames - 1 : MAX_THREADS;
    for (int i = 0; i < needed; i++) {
        fill(rgb, i);
        ps3rt_frame f = frame_of(rgb);
        const ps3rt_output* out = NULL;
        CHECK_OK(ps3rt_encoder_encode(enc, &f, &out));
        feature_count = out->token_count * out->width;
        reference[i] = malloc(feature_count * sizeof(float));
        memcpy(reference[i], out->features, feature_count * sizeof(float));
    }

    /* N encoders, one model, concurrently. */
    pthread_t tids[MAX_THREADS];
    worker_args args[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        args[t] = (worker_args){t, frames, 0, 0};
        pthread_create(&tids[t], NULL, worker, &args[t]);
    }
    int mismatches = 0, failures = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tids[t], NULL);
        mismatches += args[t].mismatches;
        failures += args[t].failures;
    }
    CHECK(failures == 0);
    CHECK(mismatches == 0);
    printf("threads_test: %d encoders x %d frames on one model: %d mismatches, %d failures\n",
           threads, frames, mismatches, failures);
    CHECK(strcmp(ps3rt_last_error(), "") == 0); /* the workers' failures stayed in their threads */

    /* One encoder, two threads at once. */
    shared_encoder = enc;
    fill(rgb, 0);
    pthread_t c1, c2;
    pthread_create(&c1, NULL, contender, rgb);
    pthread_create(&c2, NULL, contender, rgb);
    atomic_store(&start_flag, 1);
    pthread_join(c1, NULL);
    pthread_join(c2, NULL);
    printf("threads_test: one encoder, two threads: %d ok, %d busy, %d other\n",
           atomic_load(&ok_count), atomic_load(&busy_count), atomic_load(&other_count));
    CHECK(atomic_load(&other_count) == 0);
    CHECK(atomic_load(&ok_count) + atomic_load(&busy_count) == 12 && atomic_load(&ok_count) >= 1);
    /* After the contention the encoder still gives the reference result. */
    const ps3rt_output* out = NULL;
    ps3rt_frame f = frame_of(rgb);
    CHECK_OK(ps3rt_encoder_encode(enc, &f, &out));
    CHECK(out != NULL && memcmp(out->features, reference[0], feature_count * sizeof(float)) == 0);

    /* The log callback replaced while other threads log. */
    pthread_t sw, ld[2];
    pthread_create(&sw, NULL, swapper, NULL);
    pthread_create(&ld[0], NULL, loader, NULL);
    pthread_create(&ld[1], NULL, loader, NULL);
    pthread_join(ld[0], NULL);
    pthread_join(ld[1], NULL);
    atomic_store(&stop_swapping, 1);
    pthread_join(sw, NULL);
    CHECK_OK(ps3rt_set_log_callback(NULL, NULL, PS3RT_LOG_LEVEL_OFF));
    CHECK(atomic_load(&other_count) == 0);
    printf("threads_test: log callback swapped during 4 model loads: %d + %d messages\n",
           atomic_load(&log_calls[0]), atomic_load(&log_calls[1]));

    for (int i = 0; i < needed; i++) free(reference[i]);
    free(rgb);
    ps3rt_encoder_destroy(enc);
    ps3rt_model_destroy(model);
    return check_summary("threads_test");
}
