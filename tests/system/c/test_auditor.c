/*
 * The C API exercised from C: built with the system compiler against include/mint_audit.h
 * and the installed library (pkg-config flags only), driven by tests/c_api.rs.
 *
 *   test_auditor FIXTURE_DIR METRICS_OUT      happy path, every error code, forms agree,
 *                                             4 threads x 2,500 samples with exact accounting
 *   test_auditor --panic FIXTURE_DIR          with MINT_FAULT_INJECT_PANIC=mint_auditor_stats:
 *                                             a panic becomes MINT_ERR_PANIC, the handle lives on
 *   test_auditor --quick FIXTURE_DIR          all but the 4-thread run (for valgrind)
 *   test_auditor --quick-part I N FIXTURE_DIR the quick tests at positions I modulo N
 *
 * FIXTURE_DIR holds configurations written by the driver: good.json (the shipped model and
 * head), tiny_queue.json, digest_mismatch.json, bad_head.json, no_backend.json,
 * cnn_small_budget.json (the CNN head through the installed CPU plugin, room for one map),
 * cohorts.json (cohorts "reference" and "suspect", evidence windows of 10 samples), and
 * one_worker.json (good.json with one worker), sequences.json (the four maps as token
 * sequences of the same channel counts, pooled by max, last, first and max, max_tokens 32).
 * Also: a result callback that never returns by itself, which close and free must not wait for.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep, clock_gettime */
#include <mint_audit.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(cond)                                                                             \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n  last error: %s\n", __FILE__, __LINE__, #cond, \
              mint_last_error());                                                               \
      exit(1);                                                                                  \
    }                                                                                           \
  } while (0)

#define EXPECT(call, expected)                                                                 \
  do {                                                                                         \
    mint_status got_ = (call);                                                                 \
    if (got_ != (expected)) {                                                                  \
      fprintf(stderr, "%s:%d: %s returned %s, expected %s\n  last error: %s\n", __FILE__,      \
              __LINE__, #call, mint_status_name(got_), mint_status_name(expected),              \
              mint_last_error());                                                              \
      exit(1);                                                                                 \
    }                                                                                          \
  } while (0)

/* The shipped model's taps: four stage maps and the 10 logits. */
enum { NTAPS = 5, NMAPS = 4 };
static const int64_t CHANNELS[NTAPS] = {16, 32, 64, 128, 10};
static const int64_t SIDE[NMAPS] = {28, 14, 7, 4};

static const char *fixtures;

static char *path_of(const char *name) {
  static char buf[4096];
  snprintf(buf, sizeof buf, "%s/%s", fixtures, name);
  return buf;
}

/* ---- results, counted by the callback ---------------------------------------------------- */

typedef struct {
  atomic_ulong member, non_member, dropped, batches;
  atomic_int freed;
  float *scores; /* by sample id when not NULL */
  size_t scores_len;
} counts;

static void on_results(void *userdata, const mint_sample_result *results, size_t n) {
  counts *c = userdata;
  atomic_fetch_add(&c->batches, 1);
  for (size_t i = 0; i < n; i++) {
    switch (results[i].outcome) {
      case MINT_OUTCOME_MEMBER: atomic_fetch_add(&c->member, 1); break;
      case MINT_OUTCOME_NON_MEMBER: atomic_fetch_add(&c->non_member, 1); break;
      default: atomic_fetch_add(&c->dropped, 1); break;
    }
    if (c->scores && results[i].sample_id < c->scores_len) c->scores[results[i].sample_id] = results[i].score;
  }
}

static void free_counts(void *userdata) { atomic_store(&((counts *)userdata)->freed, 1); }

static mint_auditor *open_auditor(const char *config_file, counts *c) {
  mint_result_sink sink = {on_results, c, free_counts};
  mint_auditor *a = NULL;
  EXPECT(mint_auditor_new_from_file(path_of(config_file), c ? &sink : NULL, &a), MINT_OK);
  CHECK(a != NULL);
  return a;
}

/* ---- synthetic batches ------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static float rng_float(uint64_t *s) { return (float)(rng_next(s) >> 40) / (float)(1u << 24) * 3.0f - 0.5f; }

/* One batch of n samples in NCHW f32, plus its descriptors. */
typedef struct {
  size_t n;
  float *maps[NMAPS];
  float *logits;
  int64_t shape[NTAPS][4];
  mint_tensor taps[NTAPS];
} batch;

static void describe_nchw(batch *b) {
  for (int t = 0; t < NMAPS; t++) {
    int64_t *s = b->shape[t];
    s[0] = (int64_t)b->n, s[1] = CHANNELS[t], s[2] = SIDE[t], s[3] = SIDE[t];
    b->taps[t] = (mint_tensor){b->maps[t], MINT_DTYPE_F32, MINT_FORM_MAP, MINT_LAYOUT_NCHW, 4, s, NULL};
  }
  b->shape[4][0] = (int64_t)b->n, b->shape[4][1] = 10;
  b->taps[4] = (mint_tensor){b->logits, MINT_DTYPE_F32, MINT_FORM_VECTOR, MINT_LAYOUT_NCHW, 2, b->shape[4], NULL};
}

/* Fills `b` in place: its descriptors point into it, so it must not be copied afterwards. */
static void make_batch(batch *b, size_t n, uint64_t seed) {
  *b = (batch){.n = n};
  uint64_t s = seed * 2654435761u + 1;
  for (int t = 0; t < NMAPS; t++) {
    size_t len = n * (size_t)(CHANNELS[t] * SIDE[t] * SIDE[t]);
    b->maps[t] = malloc(len * sizeof(float));
    for (size_t i = 0; i < len; i++) b->maps[t][i] = rng_float(&s);
  }
  b->logits = malloc(n * 10 * sizeof(float));
  for (size_t i = 0; i < n * 10; i++) b->logits[i] = rng_float(&s) * 4.0f;
  describe_nchw(b);
}

static void free_batch(batch *b) {
  for (int t = 0; t < NMAPS; t++) free(b->maps[t]);
  free(b->logits);
}

/* The same values in another layout or dtype. */
static float *to_nhwc(const float *src, size_t n, int64_t c, int64_t side) {
  size_t hw = (size_t)(side * side);
  float *dst = malloc(n * (size_t)c * hw * sizeof(float));
  for (size_t s = 0; s < n; s++)
    for (int64_t ch = 0; ch < c; ch++)
      for (size_t p = 0; p < hw; p++) dst[(s * hw + p) * c + ch] = src[(s * c + ch) * hw + p];
  return dst;
}

static float *channel_max(const float *src, size_t n, int64_t c, int64_t side) {
  size_t hw = (size_t)(side * side);
  float *dst = malloc(n * (size_t)c * sizeof(float));
  for (size_t s = 0; s < n * (size_t)c; s++) {
    float m = -INFINITY;
    for (size_t p = 0; p < hw; p++) m = fmaxf(m, src[s * hw + p]);
    dst[s] = m;
  }
  return dst;
}

static uint16_t to_bf16(float x) { /* truncation: exact for the max, which is all we compare */
  uint32_t u;
  memcpy(&u, &x, 4);
  return (uint16_t)(u >> 16);
}

static size_t text_len(const mint_auditor *a) {
  size_t need = 0;
  EXPECT(mint_auditor_render_metrics(a, NULL, 0, &need), MINT_ERR_BUFFER_TOO_SMALL);
  CHECK(need > 100);
  return need;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_version(void) {
  CHECK((mint_abi_version() >> 16) == MINT_ABI_VERSION_MAJOR);
  CHECK((mint_abi_version() & 0xffff) == MINT_ABI_VERSION_MINOR);
  CHECK(strlen(mint_version()) > 0);
  CHECK(strcmp(mint_status_name(MINT_ERR_QUEUE_FULL), "MINT_ERR_QUEUE_FULL") == 0);
  CHECK(strcmp(mint_status_name(12345), "MINT_UNKNOWN") == 0);
  puts("ok version");
}

static void test_errors(void) {
  mint_auditor *a = NULL;
  counts c = {0};
  mint_result_sink sink = {on_results, &c, free_counts};

  /* NULL arguments; free(NULL) is a no-op. */
  EXPECT(mint_auditor_new(NULL, NULL, &a), MINT_ERR_NULL_ARGUMENT);
  CHECK(strstr(mint_last_error(), "config_json") != NULL);
  EXPECT(mint_auditor_new("{}", NULL, NULL), MINT_ERR_NULL_ARGUMENT);
  EXPECT(mint_auditor_stats(NULL, NULL), MINT_ERR_NULL_ARGUMENT);
  mint_auditor_free(NULL);

  /* Not UTF-8. */
  EXPECT(mint_auditor_new("{\"model\": \"\xff\"}", NULL, &a), MINT_ERR_INVALID_ARGUMENT);

  /* Bad configurations name the field; the sink's userdata is released on failure. */
  EXPECT(mint_auditor_new("{\"model\": {\"id\": \"m\"}, \"taps\": [], \"colour\": 1}", &sink, &a),
         MINT_ERR_INVALID_CONFIG);
  CHECK(strstr(mint_last_error(), "colour") != NULL);
  CHECK(atomic_load(&c.freed) == 1);
  CHECK(a == NULL);

  /* Missing file. */
  EXPECT(mint_auditor_new_from_file(path_of("does-not-exist.json"), NULL, &a), MINT_ERR_IO);
  CHECK(strstr(mint_last_error(), "does-not-exist.json") != NULL);

  /* A head whose sha256 differs is refused, naming the file. */
  EXPECT(mint_auditor_new_from_file(path_of("digest_mismatch.json"), NULL, &a), MINT_ERR_HEAD_DIGEST_MISMATCH);
  CHECK(strstr(mint_last_error(), "head.onnx") != NULL);
  CHECK(strstr(mint_last_error(), "refusing to start") != NULL);

  /* A head that is not ONNX. */
  EXPECT(mint_auditor_new_from_file(path_of("bad_head.json"), NULL, &a), MINT_ERR_HEAD_LOAD);

  /* A CNN head whose backend library does not exist. */
  EXPECT(mint_auditor_new_from_file(path_of("no_backend.json"), NULL, &a), MINT_ERR_BACKEND);
  CHECK(strstr(mint_last_error(), "libmint_backend_nowhere.so") != NULL);

  counts good = {0};
  a = open_auditor("good.json", &good);
  batch b;
  make_batch(&b, 8, 1);
  uint64_t ids[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  mint_submit_report r;

  mint_stats before;
  EXPECT(mint_auditor_stats(a, &before), MINT_OK);
  /* Unreadable ids: nothing taken in, and the report says so, as the counters do. */
  EXPECT(mint_auditor_submit(a, NULL, 8, b.taps, NTAPS, &r), MINT_ERR_NULL_ARGUMENT);
  mint_stats after;
  EXPECT(mint_auditor_stats(a, &after), MINT_OK);
  CHECK(r.seen == 0 && after.seen == before.seen);
  /* Readable ids with unreadable taps: taken in, counted, dropped as invalid input. */
  EXPECT(mint_auditor_submit(a, ids, 8, NULL, NTAPS, &r), MINT_ERR_NULL_ARGUMENT);
  EXPECT(mint_auditor_stats(a, &after), MINT_OK);
  CHECK(r.seen == 8 && after.seen == before.seen + 8);

  /* Wrong rank, wrong channel count, too few taps, unknown dtype, NULL data: invalid input,
     the batch dropped and counted. */
  mint_tensor bad[NTAPS];
  memcpy(bad, b.taps, sizeof bad);
  bad[1].rank = 3;
  EXPECT(mint_auditor_submit(a, ids, 8, bad, NTAPS, &r), MINT_ERR_INVALID_INPUT);
  CHECK(strstr(mint_last_error(), "rank 3") != NULL);
  memcpy(bad, b.taps, sizeof bad);
  int64_t wrong_shape[4] = {8, 31, 14, 14};
  bad[1].shape = wrong_shape;
  EXPECT(mint_auditor_submit(a, ids, 8, bad, NTAPS, &r), MINT_ERR_INVALID_INPUT);
  CHECK(strstr(mint_last_error(), "stage2") != NULL && strstr(mint_last_error(), "32 channels") != NULL);
  EXPECT(mint_auditor_submit(a, ids, 8, b.taps, NTAPS - 1, &r), MINT_ERR_INVALID_INPUT);
  memcpy(bad, b.taps, sizeof bad);
  bad[0].dtype = 77;
  EXPECT(mint_auditor_submit(a, ids, 8, bad, NTAPS, &r), MINT_ERR_INVALID_INPUT);
  memcpy(bad, b.taps, sizeof bad);
  bad[2].data = NULL;
  EXPECT(mint_auditor_submit(a, ids, 8, bad, NTAPS, &r), MINT_ERR_INVALID_INPUT);
  memcpy(bad, b.taps, sizeof bad);
  bad[2].data = (const char *)b.maps[2] + 1;
  EXPECT(mint_auditor_submit(a, ids, 8, bad, NTAPS, &r), MINT_ERR_INVALID_INPUT);
  CHECK(strstr(mint_last_error(), "aligned") != NULL);

  /* One sample with a NaN: it is dropped, the other 7 go on. */
  b.maps[3][5 * 128 * 16 + 77] = NAN;
  EXPECT(mint_auditor_submit(a, ids, 8, b.taps, NTAPS, &r), MINT_ERR_NON_FINITE);
  CHECK(r.seen == 8 && r.chosen == 8 && r.accepted == 7);
  CHECK(strstr(mint_last_error(), "sample id 5") != NULL);

  /* Buffers too small report the size needed. */
  char small[8];
  size_t need = 0;
  EXPECT(mint_auditor_head_sha256(a, small, sizeof small, &need), MINT_ERR_BUFFER_TOO_SMALL);
  CHECK(need == 65);
  char sha[65];
  EXPECT(mint_auditor_head_sha256(a, sha, sizeof sha, &need), MINT_OK);
  CHECK(strlen(sha) == 64);

  mint_close_report closed;
  EXPECT(mint_auditor_close(a, 5000, &closed), MINT_OK);
  EXPECT(mint_auditor_submit(a, ids, 8, b.taps, NTAPS, &r), MINT_ERR_CLOSED);
  mint_stats st;
  EXPECT(mint_auditor_stats(a, &st), MINT_OK);
  CHECK(st.dropped_invalid_input == 7 * 8); /* the NULL-taps call counts too; NULL ids cannot */
  CHECK(st.dropped_non_finite == 1);
  CHECK(st.dropped_closed == 8);
  CHECK(st.audited_member + st.audited_non_member == 7);
  CHECK(st.submitted == st.audited_member + st.audited_non_member + st.dropped_invalid_input +
                            st.dropped_non_finite + st.dropped_closed + st.dropped_queue_full);
  mint_auditor_free(a);
  CHECK(atomic_load(&good.freed) == 1);
  CHECK(atomic_load(&good.member) + atomic_load(&good.non_member) == 7);
  free_batch(&b);
  puts("ok errors");
}

/* A queue smaller than the batch: dropped and counted, never blocking. */
static void test_queue_full(void) {
  batch b;
  make_batch(&b, 8, 1);
  uint64_t ids[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  mint_submit_report r;
  mint_stats st;
  mint_auditor *a = open_auditor("tiny_queue.json", NULL);
  EXPECT(mint_auditor_submit(a, ids, 8, b.taps, NTAPS, &r), MINT_ERR_QUEUE_FULL);
  CHECK(r.accepted == 0);
  EXPECT(mint_auditor_stats(a, &st), MINT_OK);
  CHECK(st.dropped_queue_full == 8);
  mint_auditor_free(a);
  free_batch(&b);
  puts("ok queue full");
}

/* The CNN path copies full maps under a byte budget: over it, dropped and counted. */
static void test_cnn_budget(void) {
  batch b;
  make_batch(&b, 8, 1);
  uint64_t ids[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  mint_submit_report r;
  mint_auditor *a = open_auditor("cnn_small_budget.json", NULL);
  EXPECT(mint_auditor_submit(a, ids, 8, b.taps, NTAPS, &r), MINT_ERR_OVER_BUDGET);
  CHECK(strstr(mint_last_error(), "budget") != NULL);
  EXPECT(mint_auditor_submit(a, ids, 1, b.taps, NTAPS, &r), MINT_ERR_INVALID_INPUT); /* shapes say 8 */
  mint_close_report cr;
  EXPECT(mint_auditor_close(a, 5000, &cr), MINT_OK);
  CHECK(cr.stats.dropped_over_budget == 8);
  mint_auditor_free(a);
  free_batch(&b);
  puts("ok cnn budget");
}

/* Full maps in NCHW, NHWC, bf16, explicit strides, and the vendor's own channel max must give
   the same scores. */
static void test_forms_agree(void) {
  enum { N = 16, VARIANTS = 5 };
  float scores[VARIANTS * N];
  for (int i = 0; i < VARIANTS * N; i++) scores[i] = NAN;
  counts c = {.scores = scores, .scores_len = VARIANTS * N};
  mint_auditor *a = open_auditor("good.json", &c);
  batch b;
  make_batch(&b, N, 7);
  /* Round the maps to bf16 first so every variant sees the same values. */
  for (int t = 0; t < NMAPS; t++) {
    size_t len = N * (size_t)(CHANNELS[t] * SIDE[t] * SIDE[t]);
    for (size_t i = 0; i < len; i++) {
      uint32_t u = (uint32_t)to_bf16(b.maps[t][i]) << 16;
      memcpy(&b.maps[t][i], &u, 4);
    }
  }
  uint64_t ids[N];
  mint_tensor taps[NTAPS];
  int64_t shapes[NTAPS][4], strides[NMAPS][4];
  float *owned[NMAPS * 3] = {0};
  uint16_t *half[NMAPS];

  for (int v = 0; v < VARIANTS; v++) {
    for (int i = 0; i < N; i++) ids[i] = (uint64_t)(v * N + i);
    memcpy(taps, b.taps, sizeof taps);
    for (int t = 0; t < NMAPS; t++) {
      int64_t ch = CHANNELS[t], sd = SIDE[t];
      int64_t *s = shapes[t];
      if (v == 1) { /* NHWC */
        owned[t] = to_nhwc(b.maps[t], N, ch, sd);
        s[0] = N, s[1] = sd, s[2] = sd, s[3] = ch;
        taps[t] = (mint_tensor){owned[t], MINT_DTYPE_F32, MINT_FORM_MAP, MINT_LAYOUT_NHWC, 4, s, NULL};
      } else if (v == 2) { /* bf16 NCHW */
        size_t len = N * (size_t)(ch * sd * sd);
        half[t] = malloc(len * 2);
        for (size_t i = 0; i < len; i++) half[t][i] = to_bf16(b.maps[t][i]);
        taps[t].data = half[t];
        taps[t].dtype = MINT_DTYPE_BF16;
      } else if (v == 3) { /* NCHW rows padded by 3 elements, described with explicit strides */
        int64_t row = sd + 3;
        owned[NMAPS + t] = malloc((size_t)(N * ch * sd * row) * sizeof(float));
        for (int64_t i = 0; i < N * ch * sd; i++)
          for (int64_t x = 0; x < row; x++)
            owned[NMAPS + t][i * row + x] = x < sd ? b.maps[t][i * sd + x] : 1e30f; /* padding is never read */
        s[0] = N, s[1] = ch, s[2] = sd, s[3] = sd;
        int64_t *st = strides[t];
        st[0] = ch * sd * row, st[1] = sd * row, st[2] = row, st[3] = 1;
        taps[t] = (mint_tensor){owned[NMAPS + t], MINT_DTYPE_F32, MINT_FORM_MAP, MINT_LAYOUT_STRIDED, 4, s, st};
      } else if (v == 4) { /* reduced by the vendor (e.g. amax on the GPU) */
        owned[2 * NMAPS + t] = channel_max(b.maps[t], N, ch, sd);
        s[0] = N, s[1] = ch;
        taps[t] = (mint_tensor){owned[2 * NMAPS + t], MINT_DTYPE_F32, MINT_FORM_CHANNEL_MAX, MINT_LAYOUT_NCHW, 2, s, NULL};
      }
    }
    EXPECT(mint_auditor_submit(a, ids, N, taps, NTAPS, NULL), MINT_OK);
  }
  EXPECT(mint_auditor_close(a, 10000, NULL), MINT_OK);
  for (int v = 1; v < VARIANTS; v++)
    for (int i = 0; i < N; i++) {
      CHECK(!isnan(scores[i]));
      if (scores[v * N + i] != scores[i]) {
        fprintf(stderr, "variant %d sample %d: %.9g != %.9g\n", v, i, scores[v * N + i], scores[i]);
        exit(1);
      }
    }
  mint_auditor_free(a);
  for (int t = 0; t < NMAPS * 3; t++) free(owned[t]);
  for (int t = 0; t < NMAPS; t++) free(half[t]);
  free_batch(&b);
  puts("ok forms agree");
}

/* Token sequences: ragged lengths in [N, T, C], the same tokens as a left-padded mask in
 * [N, C, T], bf16, and the vendor's own pooling all give the same scores; padding (NaN here)
 * is never read; bad lengths and misused descriptors lose their batch, counted. */
enum { SEQ_N = 8, SEQ_T = 24 };
static const int SEQ_POOL[NMAPS] = {0, 3, 2, 0}; /* max, last, first, max (as sequences.json) */

static float seq_pool(const float *ntc, size_t s, int64_t c, int64_t ch, int64_t len, int pooling) {
  const float *at = ntc + (s * SEQ_T) * (size_t)c + (size_t)ch;
  if (pooling == 2) return at[0];
  if (pooling == 3) return at[(size_t)(len - 1) * (size_t)c];
  float m = -INFINITY;
  for (int64_t k = 0; k < len; k++) m = fmaxf(m, at[(size_t)k * (size_t)c]);
  return m;
}

static void test_sequences(void) {
  enum { VARIANTS = 4, N = SEQ_N, T = SEQ_T };
  float scores[VARIANTS * N];
  for (int i = 0; i < VARIANTS * N; i++) scores[i] = NAN;
  counts c = {.scores = scores, .scores_len = VARIANTS * N};
  mint_auditor *a = open_auditor("sequences.json", &c);
  const int64_t lengths[N] = {24, 1, 5, 17, 23, 2, 11, 24};
  uint8_t mask[N * T]; /* the same tokens, left-padded: the valid ones at the end */
  uint64_t s = 99;
  float *ntc[NMAPS], *nct[NMAPS], *pooled[NMAPS];
  uint16_t *half[NMAPS];
  for (int t = 0; t < NMAPS; t++) {
    int64_t ch = CHANNELS[t];
    size_t len = N * T * (size_t)ch;
    ntc[t] = malloc(len * sizeof(float)), nct[t] = malloc(len * sizeof(float));
    half[t] = malloc(len * 2);
    pooled[t] = malloc(N * (size_t)ch * sizeof(float));
    for (size_t i = 0; i < len; i++) {
      size_t smp = i / (T * (size_t)ch), tok = i / (size_t)ch % T;
      float x = rng_float(&s);
      uint32_t u = (uint32_t)to_bf16(x) << 16; /* bf16-exact, so every variant sees the same */
      memcpy(&x, &u, 4);
      ntc[t][i] = (int64_t)tok < lengths[smp] ? x : NAN;
      half[t][i] = to_bf16(ntc[t][i]);
    }
    for (size_t smp = 0; smp < N; smp++) {
      size_t pad = T - (size_t)lengths[smp];
      for (size_t tok = 0; tok < T; tok++)
        for (int64_t k = 0; k < ch; k++) {
          size_t from = (smp * T + tok) * (size_t)ch + (size_t)k;
          /* [N, C, T] with the sample's tokens moved to the end (left padding) */
          size_t to_tok = tok < (size_t)lengths[smp] ? tok + pad : tok - (size_t)lengths[smp];
          nct[t][(smp * (size_t)ch + (size_t)k) * T + to_tok] = ntc[t][from];
        }
      for (size_t tok = 0; tok < T; tok++) mask[smp * T + tok] = tok >= pad;
      for (int64_t k = 0; k < ch; k++)
        pooled[t][smp * (size_t)ch + (size_t)k] = seq_pool(ntc[t], smp, ch, k, lengths[smp], SEQ_POOL[t]);
    }
  }
  float logits[N * 10];
  for (int i = 0; i < N * 10; i++) logits[i] = rng_float(&s);
  int64_t shapes[NTAPS][3];
  uint64_t ids[N];
  mint_tensor taps[NTAPS];
  mint_tokens tokens[NTAPS];
  for (int v = 0; v < VARIANTS; v++) {
    for (int i = 0; i < N; i++) ids[i] = (uint64_t)(v * N + i);
    for (int t = 0; t < NMAPS; t++) {
      int64_t ch = CHANNELS[t], *sh = shapes[t];
      tokens[t] = (mint_tokens){v == 1 ? NULL : lengths, v == 1 ? mask : NULL, NULL};
      sh[0] = N, sh[1] = T, sh[2] = ch;
      if (v == 0) taps[t] = (mint_tensor){ntc[t], MINT_DTYPE_F32, MINT_FORM_SEQUENCE, MINT_LAYOUT_NTC, 3, sh, NULL};
      if (v == 1) {
        sh[1] = ch, sh[2] = T;
        taps[t] = (mint_tensor){nct[t], MINT_DTYPE_F32, MINT_FORM_SEQUENCE, MINT_LAYOUT_NCT, 3, sh, NULL};
        /* `last` and `first` of the left-padded copy are the same tokens as in [N, T, C] */
      }
      if (v == 2) taps[t] = (mint_tensor){half[t], MINT_DTYPE_BF16, MINT_FORM_SEQUENCE, MINT_LAYOUT_NTC, 3, sh, NULL};
      if (v == 3) {
        sh[1] = ch;
        taps[t] = (mint_tensor){pooled[t], MINT_DTYPE_F32, MINT_FORM_CHANNEL_MAX, MINT_LAYOUT_NCHW, 2, sh, NULL};
        tokens[t] = (mint_tokens){NULL, NULL, NULL};
      }
    }
    shapes[4][0] = N, shapes[4][1] = 10;
    taps[4] = (mint_tensor){logits, MINT_DTYPE_F32, MINT_FORM_VECTOR, MINT_LAYOUT_NCHW, 2, shapes[4], NULL};
    tokens[4] = (mint_tokens){NULL, NULL, NULL};
    EXPECT(mint_auditor_submit_tokens(a, MINT_COHORT_DEFAULT, ids, N, taps, tokens, NTAPS, NULL), MINT_OK);
  }
  /* Errors, each losing its batch of N (the last variant's descriptors, the vendor-pooled ones
   * replaced where needed). */
  mint_tensor bad[NTAPS];
  mint_tokens bad_tokens[NTAPS];
  int64_t seq_shape[3] = {N, T, CHANNELS[0]};
  const int64_t zero_length[N] = {24, 1, 0, 17, 23, 2, 11, 24}, too_long[N] = {25, 1, 5, 17, 23, 2, 11, 24};
  const int64_t *wrong[2] = {zero_length, too_long};
  for (int e = 0; e < 4; e++) {
    memcpy(bad, taps, sizeof bad);
    memset(bad_tokens, 0, sizeof bad_tokens);
    bad[0] = (mint_tensor){ntc[0], MINT_DTYPE_F32, MINT_FORM_SEQUENCE, MINT_LAYOUT_NTC, 3, seq_shape, NULL};
    if (e < 2) bad_tokens[0].lengths = wrong[e];
    if (e == 2) bad_tokens[0] = (mint_tokens){lengths, mask, NULL}; /* both */
    if (e == 3) bad_tokens[4].lengths = lengths;            /* on the logits */
    EXPECT(mint_auditor_submit_tokens(a, MINT_COHORT_DEFAULT, ids, N, bad, bad_tokens, NTAPS, NULL),
           MINT_ERR_INVALID_INPUT);
    const char *needle[4] = {"sample 2 has length 0", "sample 0 has length 25", "not both", "MINT_FORM_SEQUENCE"};
    if (!strstr(mint_last_error(), needle[e])) {
      fprintf(stderr, "error %d: '%s' lacks '%s'\n", e, mint_last_error(), needle[e]);
      exit(1);
    }
  }
  /* A map layout for a sequence is refused. */
  memcpy(bad, taps, sizeof bad);
  bad[0] = (mint_tensor){ntc[0], MINT_DTYPE_F32, MINT_FORM_SEQUENCE, MINT_LAYOUT_NHWC, 3, seq_shape, NULL};
  EXPECT(mint_auditor_submit(a, ids, N, bad, NTAPS, NULL), MINT_ERR_INVALID_INPUT);
  CHECK(strstr(mint_last_error(), "MINT_LAYOUT_NTC") != NULL);

  EXPECT(mint_auditor_close(a, 10000, NULL), MINT_OK);
  mint_stats st;
  EXPECT(mint_auditor_stats(a, &st), MINT_OK);
  CHECK(st.dropped_invalid_input == 5 * N);
  CHECK(st.submitted == (VARIANTS + 5) * N);
  for (int v = 1; v < VARIANTS; v++)
    for (int i = 0; i < N; i++) {
      CHECK(!isnan(scores[i]));
      /* the head's scores move by up to 7e-6 with the batch they are in (batch_invariance.rs) */
      if (fabsf(scores[v * N + i] - scores[i]) > 5e-5f) {
        fprintf(stderr, "sequence variant %d sample %d: %.9g != %.9g\n", v, i, scores[v * N + i], scores[i]);
        exit(1);
      }
    }
  mint_auditor_free(a);
  for (int t = 0; t < NMAPS; t++) free(ntc[t]), free(nct[t]), free(half[t]), free(pooled[t]);
  puts("ok sequences");
}

/* ---- a language model's logits, scored by the library ------------------------------------ */

enum { LM_N = 6, LM_T = 20, LM_V = 256, LM_W = 128 };

/* The shipped language model's head on random hidden states: once with token scores computed
 * here in double precision ([N, T - 1, 3], one position fewer), once with the logits and token
 * ids for the library to score (a token_logits tap, ABI 1.4's `targets`). */
static void test_logits(void) {
  float scores[2 * LM_N];
  for (int i = 0; i < 2 * LM_N; i++) scores[i] = NAN;
  counts c = {.scores = scores, .scores_len = 2 * LM_N};
  mint_auditor *given = open_auditor("lm_scores.json", &c), *computed = open_auditor("lm_logits.json", &c);
  const int64_t lengths[LM_N] = {20, 2, 9, 14, 20, 5};
  int64_t shifted[LM_N], tokens[LM_N * LM_T];
  uint64_t s = 7;
  float *hidden = malloc(sizeof(float) * LM_N * LM_T * LM_W);
  float *logits = malloc(sizeof(float) * LM_N * LM_T * LM_V);
  float *token_scores = malloc(sizeof(float) * LM_N * (LM_T - 1) * 3);
  for (size_t i = 0; i < (size_t)LM_N * LM_T * LM_W; i++) hidden[i] = rng_float(&s);
  for (size_t i = 0; i < (size_t)LM_N * LM_T * LM_V; i++) logits[i] = 4.0f * rng_float(&s);
  for (size_t i = 0; i < (size_t)LM_N * LM_T; i++) tokens[i] = (int64_t)(rng_next(&s) % LM_V);
  for (int n = 0; n < LM_N; n++) {
    shifted[n] = lengths[n] - 1;
    for (int t = 0; t < LM_T - 1; t++) {
      const float *row = logits + ((size_t)n * LM_T + (size_t)t) * LM_V;
      double top = -INFINITY, sum = 0, mean = 0, var = 0;
      for (int v = 0; v < LM_V; v++) top = fmax(top, row[v]);
      for (int v = 0; v < LM_V; v++) sum += exp(row[v] - top);
      double lse = top + log(sum);
      for (int v = 0; v < LM_V; v++) mean += exp(row[v] - lse) * (row[v] - lse);
      for (int v = 0; v < LM_V; v++) var += exp(row[v] - lse) * (row[v] - lse - mean) * (row[v] - lse - mean);
      float *out = token_scores + ((size_t)n * (LM_T - 1) + (size_t)t) * 3;
      out[0] = (float)(row[tokens[n * LM_T + t + 1]] - lse), out[1] = (float)mean, out[2] = (float)sqrt(var);
    }
  }
  int64_t hidden_shape[3] = {LM_N, LM_T, LM_W}, logits_shape[3] = {LM_N, LM_T, LM_V};
  int64_t scores_shape[3] = {LM_N, LM_T - 1, 3};
  mint_tensor taps[5];
  mint_tokens tok[5];
  for (int b = 0; b < 4; b++) {
    taps[b] = (mint_tensor){hidden, MINT_DTYPE_F32, MINT_FORM_SEQUENCE, MINT_LAYOUT_NTC, 3, hidden_shape, NULL};
    tok[b] = (mint_tokens){lengths, NULL, NULL};
  }
  uint64_t ids[LM_N];
  for (int i = 0; i < LM_N; i++) ids[i] = (uint64_t)i;
  taps[4] = (mint_tensor){token_scores, MINT_DTYPE_F32, MINT_FORM_SEQUENCE, MINT_LAYOUT_NTC, 3, scores_shape, NULL};
  tok[4] = (mint_tokens){shifted, NULL, NULL};
  EXPECT(mint_auditor_submit_tokens(given, MINT_COHORT_DEFAULT, ids, LM_N, taps, tok, 5, NULL), MINT_OK);
  for (int i = 0; i < LM_N; i++) ids[i] = (uint64_t)(LM_N + i);
  taps[4] = (mint_tensor){logits, MINT_DTYPE_F32, MINT_FORM_SEQUENCE, MINT_LAYOUT_NTC, 3, logits_shape, NULL};
  tok[4] = (mint_tokens){lengths, NULL, tokens};
  EXPECT(mint_auditor_submit_tokens(computed, MINT_COHORT_DEFAULT, ids, LM_N, taps, tok, 5, NULL), MINT_OK);
  /* An id outside the vocabulary where it is scored, then no ids: each loses its batch. */
  int64_t saved = tokens[LM_T + 1];
  tokens[LM_T + 1] = LM_V;
  EXPECT(mint_auditor_submit_tokens(computed, MINT_COHORT_DEFAULT, ids, LM_N, taps, tok, 5, NULL),
         MINT_ERR_INVALID_INPUT);
  CHECK(strstr(mint_last_error(), "sample 1 has token id 256 at position 1") != NULL);
  tokens[LM_T + 1] = saved;
  tok[4].targets = NULL;
  EXPECT(mint_auditor_submit_tokens(computed, MINT_COHORT_DEFAULT, ids, LM_N, taps, tok, 5, NULL),
         MINT_ERR_INVALID_INPUT);
  CHECK(strstr(mint_last_error(), "token ids") != NULL);
  EXPECT(mint_auditor_close(given, 10000, NULL), MINT_OK);
  EXPECT(mint_auditor_close(computed, 10000, NULL), MINT_OK);
  mint_stats st;
  EXPECT(mint_auditor_stats(computed, &st), MINT_OK);
  CHECK(st.dropped_invalid_input == 2 * LM_N && st.audited_member + st.audited_non_member == LM_N);
  for (int i = 0; i < LM_N; i++) {
    CHECK(!isnan(scores[i]) && !isnan(scores[LM_N + i]));
    if (fabsf(scores[LM_N + i] - scores[i]) > 2e-4f) {
      fprintf(stderr, "logits sample %d: %.9g scored by the library, %.9g from given scores\n", i,
              scores[LM_N + i], scores[i]);
      exit(1);
    }
  }
  mint_auditor_free(given);
  mint_auditor_free(computed);
  free(hidden), free(logits), free(token_scores);
  puts("ok logits");
}

/* The library runs the shipped model itself and hands back its logits. */
static void test_infer(void) {
  counts c = {0};
  mint_auditor *a = open_auditor("good.json", &c);
  enum { N = 6 };
  float inputs[N * 28 * 28], logits[N * 10];
  uint64_t s = 99;
  for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) inputs[i] = (float)(rng_next(&s) % 256) / 255.0f;
  uint64_t ids[N] = {10, 11, 12, 13, 14, 15};
  mint_submit_report r;
  EXPECT(mint_auditor_infer(a, ids, N, inputs, N * 28 * 28, logits, N * 10, &r), MINT_OK);
  CHECK(r.accepted == N);
  for (int i = 0; i < N * 10; i++) CHECK(isfinite(logits[i]));
  EXPECT(mint_auditor_infer(a, ids, N, inputs, N * 28 * 28 - 1, logits, N * 10, &r), MINT_ERR_INVALID_INPUT);
  /* By cohort (ABI 1.2): the default cohort by number; an undeclared one still gets the logits. */
  float again[N * 10];
  EXPECT(mint_auditor_infer_cohort(a, MINT_COHORT_DEFAULT, ids, N, inputs, N * 28 * 28, again, N * 10, &r), MINT_OK);
  CHECK(memcmp(again, logits, sizeof again) == 0 && r.accepted == N);
  memset(again, 0, sizeof again);
  EXPECT(mint_auditor_infer_cohort(a, 7, ids, N, inputs, N * 28 * 28, again, N * 10, &r), MINT_ERR_INVALID_INPUT);
  CHECK(memcmp(again, logits, sizeof again) == 0);
  EXPECT(mint_auditor_close(a, 10000, NULL), MINT_OK);
  CHECK(atomic_load(&c.member) + atomic_load(&c.non_member) == 2 * N);
  mint_stats st;
  EXPECT(mint_auditor_stats(a, &st), MINT_OK);
  CHECK(st.dropped_invalid_input == N);
  mint_auditor_free(a);
  puts("ok infer");
}

/* The same model run on onnxruntime (`model.runtime`): the same logits within 1e-4, and the
 * same samples audited. Not in --quick: onnxruntime is not built for valgrind or ASan. */
static void test_infer_on_onnxruntime(void) {
  enum { N = 6 };
  float inputs[N * 28 * 28], on_tract[N * 10], on_ort[N * 10];
  uint64_t s = 7;
  for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) inputs[i] = (float)(rng_next(&s) % 256) / 255.0f;
  uint64_t ids[N] = {20, 21, 22, 23, 24, 25};
  mint_submit_report r;
  const char *configs[2] = {"good.json", "onnxruntime.json"};
  float *outputs[2] = {on_tract, on_ort};
  for (int k = 0; k < 2; k++) {
    counts c = {0};
    mint_auditor *a = open_auditor(configs[k], &c);
    EXPECT(mint_auditor_infer(a, ids, N, inputs, N * 28 * 28, outputs[k], N * 10, &r), MINT_OK);
    CHECK(r.accepted == N);
    EXPECT(mint_auditor_close(a, 10000, NULL), MINT_OK);
    CHECK(atomic_load(&c.member) + atomic_load(&c.non_member) == N);
    mint_auditor_free(a);
  }
  for (int i = 0; i < N * 10; i++) {
    if (fabsf(on_tract[i] - on_ort[i]) > 1e-4f * fmaxf(1.0f, fabsf(on_tract[i]))) {
      fprintf(stderr, "logit %d: tract %.9g, onnxruntime %.9g\n", i, on_tract[i], on_ort[i]);
      exit(1);
    }
  }
  puts("ok infer on onnxruntime");
}

/* Cohorts (ABI 1.2): samples tagged by cohort are counted and tested apart; an undeclared
 * cohort loses its batch as invalid input, counted in "default". */
static void test_cohorts(void) {
  counts c = {0};
  mint_auditor *a = open_auditor("cohorts.json", &c);
  uint32_t reference = 99, suspect = 99, deflt = 99;
  EXPECT(mint_auditor_cohort(a, "reference", &reference), MINT_OK);
  EXPECT(mint_auditor_cohort(a, "suspect", &suspect), MINT_OK);
  EXPECT(mint_auditor_cohort(a, "default", &deflt), MINT_OK);
  CHECK(reference == 1 && suspect == 2 && deflt == MINT_COHORT_DEFAULT);
  EXPECT(mint_auditor_cohort(a, "owner-17", &suspect), MINT_ERR_INVALID_ARGUMENT);
  CHECK(strstr(mint_last_error(), "reference, suspect") != NULL);
  EXPECT(mint_auditor_cohort(a, NULL, &suspect), MINT_ERR_NULL_ARGUMENT);
  CHECK(suspect == 2);

  batch b;
  make_batch(&b, 10, 21);
  uint64_t ids[10];
  for (int k = 0; k < 4; k++) { /* the suspect cohort gets exactly the reference's samples */
    for (int i = 0; i < 10; i++) ids[i] = (uint64_t)k * 10 + (uint64_t)i;
    EXPECT(mint_auditor_submit_cohort(a, k % 2 ? suspect : reference, ids, 10, b.taps, NTAPS, NULL), MINT_OK);
  }
  mint_submit_report r;
  EXPECT(mint_auditor_submit_cohort(a, 3, ids, 10, b.taps, NTAPS, &r), MINT_ERR_INVALID_INPUT);
  CHECK(strstr(mint_last_error(), "cohort 3") != NULL);
  EXPECT(mint_auditor_submit_cohort(a, UINT32_MAX, ids, 10, b.taps, NTAPS, &r), MINT_ERR_INVALID_INPUT);
  EXPECT(mint_auditor_submit_cohort(a, suspect, ids, 2, b.taps, NTAPS, NULL), MINT_ERR_INVALID_INPUT); /* shapes say 10 */
  EXPECT(mint_auditor_close(a, 10000, NULL), MINT_OK);

  mint_stats st;
  EXPECT(mint_auditor_cohort_stats(a, reference, &st), MINT_OK);
  CHECK(st.submitted == 20 && st.audited_member + st.audited_non_member == 20);
  EXPECT(mint_auditor_cohort_stats(a, suspect, &st), MINT_OK);
  CHECK(st.submitted == 22 && st.dropped_invalid_input == 2);
  EXPECT(mint_auditor_cohort_stats(a, MINT_COHORT_DEFAULT, &st), MINT_OK);
  CHECK(st.submitted == 20 && st.dropped_invalid_input == 20);
  EXPECT(mint_auditor_cohort_stats(a, 3, &st), MINT_ERR_INVALID_ARGUMENT);
  EXPECT(mint_auditor_stats(a, &st), MINT_OK);
  CHECK(st.submitted == 62 && st.dropped_invalid_input == 22);

  mint_cohort_evidence e;
  EXPECT(mint_auditor_cohort_evidence(a, suspect, &e), MINT_OK);
  CHECK(e.audited == 20 && e.windows == 2 && e.window_progress == 0);
  /* Uncalibrated: no binomial test, no member fraction. Equal scores: AUC one half. */
  CHECK(isnan(e.window_binomial_p) && isnan(e.member_fraction));
  CHECK(!isnan(e.window_rank_p) && e.rank_alarms == 0);
  CHECK(e.overall_auc > 0.45 && e.overall_auc < 0.55 && e.overall_rank_p > 0.1);
  EXPECT(mint_auditor_cohort_evidence(a, reference, &e), MINT_OK);
  CHECK(e.audited == 20 && isnan(e.window_rank_p) && isnan(e.overall_auc)); /* not ranked against itself */
  EXPECT(mint_auditor_cohort_evidence(a, 3, &e), MINT_ERR_INVALID_ARGUMENT);
  EXPECT(mint_auditor_cohort_evidence(a, suspect, NULL), MINT_ERR_NULL_ARGUMENT);
  /* Anytime evidence (ABI 1.5): uncalibrated, so no flag e-value, sequence or certificate;
   * equal scores keep the scores e-value near 1. */
  mint_cohort_anytime any;
  EXPECT(mint_auditor_cohort_anytime(a, suspect, &any), MINT_OK);
  CHECK(isnan(any.flags_e_value) && isnan(any.flags_p_value) && isnan(any.certificate));
  CHECK(isnan(any.member_fraction_low) && isnan(any.member_fraction_high));
  CHECK(any.scores_e_value > 0 && any.scores_e_value < 20 && any.scores_p_value > 0.05 && any.scores_p_value <= 1);
  EXPECT(mint_auditor_cohort_anytime(a, reference, &any), MINT_OK);
  CHECK(isnan(any.scores_e_value)); /* not tested against itself */
  EXPECT(mint_auditor_cohort_anytime(a, 3, &any), MINT_ERR_INVALID_ARGUMENT);
  EXPECT(mint_auditor_cohort_anytime(a, suspect, NULL), MINT_ERR_NULL_ARGUMENT);

  size_t need = text_len(a);
  char *text = malloc(need);
  EXPECT(mint_auditor_render_metrics(a, text, need, &need), MINT_OK);
  CHECK(strstr(text, "mint_samples_dropped_total{cohort=\"default\",reason=\"invalid_input\"} 20") != NULL);
  CHECK(strstr(text, "mint_evidence_windows_total{cohort=\"suspect\",result=\"quiet\",test=\"rank\"} 2") != NULL);
  CHECK(strstr(text, "mint_calibration_info{digest=\"\",state=\"uncalibrated\"") != NULL);
  free(text);
  mint_auditor_free(a);
  free_batch(&b);
  puts("ok cohorts");
}

/* ---- a callback that calls close and free on its own auditor ------------------------------ */

typedef struct {
  mint_auditor *_Atomic a;
  atomic_int close_status, free_status, calls;
} reentrant;

static void on_results_reentrant(void *userdata, const mint_sample_result *results, size_t n) {
  (void)results, (void)n;
  reentrant *r = userdata;
  mint_auditor *a;
  while ((a = atomic_load(&r->a)) == NULL) {
  } /* set by the main thread right after mint_auditor_new */
  if (atomic_fetch_add(&r->calls, 1) > 0) return;
  atomic_store(&r->close_status, (int)mint_auditor_close(a, 0, NULL));
  mint_auditor_free(a); /* refused: it would wait for this very thread */
  atomic_store(&r->free_status, strstr(mint_last_error(), "own result callback") != NULL);
}

static void test_reentrant(void) {
  static reentrant r = {.close_status = -1, .free_status = -1};
  mint_result_sink sink = {on_results_reentrant, &r, NULL};
  mint_auditor *a = NULL;
  EXPECT(mint_auditor_new_from_file(path_of("good.json"), &sink, &a), MINT_OK);
  atomic_store(&r.a, a);
  batch b;
  make_batch(&b, 4, 7);
  uint64_t ids[4] = {1, 2, 3, 4};
  EXPECT(mint_auditor_submit(a, ids, 4, b.taps, NTAPS, NULL), MINT_OK);
  while (atomic_load(&r.free_status) < 0) {
  }
  CHECK(atomic_load(&r.close_status) == MINT_ERR_REENTRANT);
  CHECK(atomic_load(&r.free_status) == 1);
  /* The handle is intact: closing from here works and the counts add up. */
  mint_close_report report;
  EXPECT(mint_auditor_close(a, 10000, &report), MINT_OK);
  CHECK(report.stats.submitted == 4);
  CHECK(report.stats.audited_member + report.stats.audited_non_member == 4);
  mint_auditor_free(a);
  free_batch(&b);
  puts("ok reentrant");
}

/* ---- a callback that does not return: close and free stay bounded ----------------------- */

typedef struct {
  atomic_int entered, release, returned, freed;
} stuck;

static void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void on_results_stuck(void *userdata, const mint_sample_result *results, size_t n) {
  (void)results, (void)n;
  stuck *s = userdata;
  atomic_fetch_add(&s->entered, 1);
  /* Until released, or 8 s: without the bound on close, the CHECK on its time fails. */
  for (int i = 0; i < 8000 && !atomic_load(&s->release); i++) sleep_ms(1);
  atomic_fetch_add(&s->returned, 1);
}

static void free_stuck(void *userdata) {
  stuck *s = userdata;
  /* The userdata is released only after the last callback has returned. */
  CHECK(atomic_load(&s->returned) == atomic_load(&s->entered));
  atomic_store(&s->freed, 1);
}

static void test_stuck_callback(void) {
  static stuck s;
  mint_result_sink sink = {on_results_stuck, &s, free_stuck};
  mint_auditor *a = NULL;
  EXPECT(mint_auditor_new_from_file(path_of("one_worker.json"), &sink, &a), MINT_OK);
  batch b;
  make_batch(&b, 4, 11);
  uint64_t ids[4] = {1, 2, 3, 4};
  EXPECT(mint_auditor_submit(a, ids, 4, b.taps, NTAPS, NULL), MINT_OK);
  while (!atomic_load(&s.entered)) sleep_ms(1);
  /* The worker is held by the callback: these wait in the queue behind it. */
  uint64_t more[4] = {5, 6, 7, 8};
  EXPECT(mint_auditor_submit(a, more, 4, b.taps, NTAPS, NULL), MINT_OK);
  double started = now_s();
  mint_close_report report;
  EXPECT(mint_auditor_close(a, 50, &report), MINT_ERR_TIMED_OUT);
  double took = now_s() - started;
  CHECK(strstr(mint_last_error(), "result callback") != NULL);
  /* 50 ms + MINT_CLOSE_GRACE_MS, with room for a slow machine (and valgrind); without the
     bound it would wait the callback's 8 s. */
  CHECK(took < 0.05 + MINT_CLOSE_GRACE_MS / 1000.0 + 2.0);
  CHECK(report.stats.submitted == 8);
  CHECK(report.stats.audited_member + report.stats.audited_non_member == 4); /* in the callback */
  CHECK(report.abandoned == 4 && report.stats.dropped_shutdown == 4);       /* settled by close */
  /* Free is bounded too, and leaves the userdata to the callback still using it. */
  started = now_s();
  mint_auditor_free(a);
  CHECK(now_s() - started < 2.0);
  CHECK(atomic_load(&s.freed) == 0);
  atomic_store(&s.release, 1);
  for (int i = 0; i < 10000 && !atomic_load(&s.freed); i++) sleep_ms(1);
  CHECK(atomic_load(&s.freed) == 1);
  CHECK(atomic_load(&s.entered) == 1); /* the queued samples were counted, never delivered */
  free_batch(&b);
  puts("ok stuck callback");
}

/* ---- 4 threads ------------------------------------------------------------------------- */

enum { THREADS = 4, PER_THREAD = 2500, BATCH = 50, NAN_EVERY = 10 };

typedef struct {
  const mint_auditor *a;
  int index;
  unsigned long non_finite, queue_full, accepted, poison_lost;
} worker_arg;

static void *serve(void *p) {
  worker_arg *w = p;
  batch b;
  make_batch(&b, BATCH, (uint64_t)w->index + 100);
  float *nhwc[NMAPS];
  int64_t nhwc_shape[NMAPS][4];
  for (int t = 0; t < NMAPS; t++) {
    nhwc[t] = to_nhwc(b.maps[t], BATCH, CHANNELS[t], SIDE[t]);
    int64_t *s = nhwc_shape[t];
    s[0] = BATCH, s[1] = SIDE[t], s[2] = SIDE[t], s[3] = CHANNELS[t];
  }
  uint64_t ids[BATCH];
  for (int k = 0; k < PER_THREAD / BATCH; k++) {
    mint_tensor taps[NTAPS];
    memcpy(taps, b.taps, sizeof taps);
    if (k % 2 == 1) /* every other batch arrives channels-last */
      for (int t = 0; t < NMAPS; t++)
        taps[t] = (mint_tensor){nhwc[t], MINT_DTYPE_F32, MINT_FORM_MAP, MINT_LAYOUT_NHWC, 4, nhwc_shape[t], NULL};
    float saved = b.maps[0][3];
    int poisoned = k % NAN_EVERY == 0; /* always an NCHW batch: NAN_EVERY is even */
    if (poisoned) b.maps[0][3] = INFINITY; /* sample 0 of this batch */
    for (int i = 0; i < BATCH; i++) ids[i] = (uint64_t)w->index * PER_THREAD + (uint64_t)k * BATCH + (uint64_t)i;
    mint_submit_report r;
    mint_status st = mint_auditor_submit(w->a, ids, BATCH, taps, NTAPS, &r);
    b.maps[0][3] = saved;
    if (st == MINT_ERR_NON_FINITE) {
      w->non_finite += r.chosen - r.accepted;
      w->accepted += r.accepted;
    } else if (st == MINT_ERR_QUEUE_FULL) {
      w->queue_full += BATCH;
      w->poison_lost += poisoned; /* refused before its values were read */
    } else {
      CHECK(st == MINT_OK && !poisoned);
      w->accepted += r.accepted;
    }
  }
  for (int t = 0; t < NMAPS; t++) free(nhwc[t]);
  free_batch(&b);
  return NULL;
}

/* The value of a series, found at the start of a line (not in its # HELP text). */
static unsigned long long metric_value(const char *text, const char *series) {
  char needle[256];
  snprintf(needle, sizeof needle, "\n%s", series);
  const char *p = strstr(text, needle);
  CHECK(p != NULL);
  return strtoull(p + strlen(needle), NULL, 10);
}

static void test_concurrent(const char *metrics_out) {
  counts c = {0};
  mint_auditor *a = open_auditor("good.json", &c);
  pthread_t threads[THREADS];
  worker_arg args[THREADS];
  for (int i = 0; i < THREADS; i++) {
    args[i] = (worker_arg){.a = a, .index = i};
    CHECK(pthread_create(&threads[i], NULL, serve, &args[i]) == 0);
  }
  /* Scrape while they run: rendering is safe alongside submits. */
  size_t need = text_len(a) + 4096;
  char *text = malloc(need);
  size_t len;
  EXPECT(mint_auditor_render_metrics(a, text, need, &len), MINT_OK);
  unsigned long non_finite = 0, queue_full = 0, accepted = 0, poison_lost = 0;
  for (int i = 0; i < THREADS; i++) {
    CHECK(pthread_join(threads[i], NULL) == 0);
    non_finite += args[i].non_finite;
    poison_lost += args[i].poison_lost;
    queue_full += args[i].queue_full;
    accepted += args[i].accepted;
  }
  mint_close_report closed;
  EXPECT(mint_auditor_close(a, 30000, &closed), MINT_OK);
  mint_stats s = closed.stats;
  unsigned long long dropped = s.dropped_queue_full + s.dropped_invalid_input + s.dropped_non_finite +
                               s.dropped_over_budget + s.dropped_head_error + s.dropped_backend_error +
                               s.dropped_shutdown + s.dropped_closed;
  unsigned long long audited = s.audited_member + s.audited_non_member;
  printf("submitted %llu = audited %llu + dropped %llu (non-finite %llu, queue full %llu)\n",
         (unsigned long long)s.submitted, audited, dropped, (unsigned long long)s.dropped_non_finite,
         (unsigned long long)s.dropped_queue_full);
  CHECK(s.seen == THREADS * PER_THREAD && s.submitted == THREADS * PER_THREAD);
  CHECK(s.submitted == audited + dropped);
  CHECK(s.dropped_non_finite == non_finite);
  CHECK(non_finite + poison_lost == THREADS * ((PER_THREAD / BATCH + NAN_EVERY - 1) / NAN_EVERY));
  CHECK(s.dropped_queue_full == queue_full);
  CHECK(audited + s.dropped_shutdown + s.dropped_head_error == accepted);
  /* Every accepted sample reached the callback exactly once. */
  CHECK(atomic_load(&c.member) + atomic_load(&c.non_member) == audited);
  CHECK(atomic_load(&c.dropped) == s.dropped_shutdown + s.dropped_head_error);

  /* The rendered metrics say the same. */
  need = text_len(a);
  text = realloc(text, need);
  EXPECT(mint_auditor_render_metrics(a, text, need, &len), MINT_OK);
  CHECK(len == need && strlen(text) + 1 == need);
  CHECK(metric_value(text, "mint_samples_submitted_total{cohort=\"default\"} ") == s.submitted);
  CHECK(metric_value(text, "mint_samples_audited_total{cohort=\"default\",verdict=\"member\"} ") == s.audited_member);
  CHECK(metric_value(text, "mint_samples_dropped_total{cohort=\"default\",reason=\"non_finite\"} ") ==
        s.dropped_non_finite);
  FILE *f = fopen(metrics_out, "w");
  CHECK(f != NULL);
  fputs(text, f);
  fclose(f);
  free(text);
  mint_auditor_free(a);
  CHECK(atomic_load(&c.freed) == 1);
  puts("ok concurrent");
}

static void test_panic(void) {
  mint_auditor *a = open_auditor("good.json", NULL);
  mint_stats st;
  EXPECT(mint_auditor_stats(a, &st), MINT_ERR_PANIC);
  CHECK(strstr(mint_last_error(), "mint_auditor_stats") != NULL);
  /* The handle is still usable. */
  size_t need;
  EXPECT(mint_auditor_render_metrics(a, NULL, 0, &need), MINT_ERR_BUFFER_TOO_SMALL);
  EXPECT(mint_auditor_close(a, 1000, NULL), MINT_OK);
  mint_auditor_free(a);
  puts("ok panic");
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--panic") == 0) {
    fixtures = argv[2];
    test_panic();
    return 0;
  }
  if ((argc == 3 && strcmp(argv[1], "--quick") == 0) || (argc == 5 && strcmp(argv[1], "--quick-part") == 0)) {
    /* Everything but the 4-thread run: for valgrind, which runs code 20-50x slower. With
     * --quick-part I N, the tests whose position is I modulo N (the driver rotates I). Each
     * test's time is printed, so that the parts can be balanced by measurement. */
    static const struct {
      const char *name;
      void (*run)(void);
    } quick[] = {
        /* In this order, parts of 3 take about 47, 40 and 158 s under valgrind on the CI
         * machine kind (cnn_budget alone is 146 s: the CPU plugin compiling the shipped CNN
         * head), 260 s in all. */
        {"version", test_version},         {"errors", test_errors},
        {"cnn_budget", test_cnn_budget},   {"infer", test_infer},
        {"queue_full", test_queue_full},   {"logits", test_logits},
        {"forms_agree", test_forms_agree}, {"sequences", test_sequences},
        {"reentrant", test_reentrant},     {"cohorts", test_cohorts},
        {"stuck_callback", test_stuck_callback},
    };
    long part = 0, parts = 1;
    if (argc == 5) {
      part = strtol(argv[2], NULL, 10);
      parts = strtol(argv[3], NULL, 10);
      if (parts < 1 || part < 0 || part >= parts) {
        fprintf(stderr, "--quick-part I N: 0 <= I < N\n");
        return 2;
      }
    }
    fixtures = argv[argc - 1];
    for (size_t i = 0; i < sizeof quick / sizeof quick[0]; i++) {
      if ((long)i % parts != part) continue;
      double started = now_s();
      quick[i].run();
      printf("quick test %s: %.1f s\n", quick[i].name, now_s() - started);
    }
    puts("quick C API tests passed");
    return 0;
  }
  if (argc != 3) {
    fprintf(stderr, "usage: %s FIXTURE_DIR METRICS_OUT | --panic FIXTURE_DIR | --quick FIXTURE_DIR | --quick-part I N FIXTURE_DIR\n",
            argv[0]);
    return 2;
  }
  fixtures = argv[1];
  test_version();
  test_errors();
  test_queue_full();
  test_cnn_budget();
  test_forms_agree();
  test_sequences();
  test_logits();
  test_infer();
  test_infer_on_onnxruntime();
  test_cohorts();
  test_reentrant();
  test_stuck_callback();
  test_concurrent(argv[2]);
  puts("all C API tests passed");
  return 0;
}
