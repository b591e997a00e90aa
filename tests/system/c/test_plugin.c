/*
 * A backend plugin written in C against include/mint_backend.h, for tests/backends.rs.
 *
 * Its configuration's "mode" chooses its behaviour:
 *   "echo"         answers every sample during submit, score = (id % 100) / 100
 *   "fail_submit"  refuses every batch (submit returns MINT_BACKEND_ERROR)
 *   "fail_answer"  accepts every batch, then reports each sample through on_failure
 *   "never"        accepts every batch and never answers (flush times out)
 *   "stranger"     answers with ids it was never given
 *   "wild"         answers with scores that are not probabilities (1.8e37, -0.5, NaN, 1.5)
 * Compile-time variants the host must refuse:
 *   -DABI_MAJOR=2   built for another ABI major
 *   -DNO_FLUSH      a NULL required function
 *   -DSHORT_TABLE   a table shorter than ABI 1.0's
 *   -DNO_ENTRY      no mint_backend_entry symbol at all
 */
#define _POSIX_C_SOURCE 200809L
#include <mint_backend.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef ABI_MAJOR
#define ABI_MAJOR MINT_BACKEND_ABI_MAJOR
#endif

typedef struct {
  int mode;
  mint_backend_host host;
} instance;

enum { ECHO, FAIL_SUBMIT, FAIL_ANSWER, NEVER, STRANGER, WILD };

static _Thread_local const char *last = "";

static int32_t create(const char *config_json, const mint_backend_options *options, const mint_backend_host *host,
                      mint_backend **out) {
  (void)options;
  instance *b = calloc(1, sizeof *b);
  if (!b) return MINT_BACKEND_ERROR;
  if (strstr(config_json, "\"echo\"")) b->mode = ECHO;
  else if (strstr(config_json, "\"fail_submit\"")) b->mode = FAIL_SUBMIT;
  else if (strstr(config_json, "\"fail_answer\"")) b->mode = FAIL_ANSWER;
  else if (strstr(config_json, "\"never\"")) b->mode = NEVER;
  else if (strstr(config_json, "\"stranger\"")) b->mode = STRANGER;
  else if (strstr(config_json, "\"wild\"")) b->mode = WILD;
  else {
    free(b);
    last = "test plugin: unknown mode";
    return MINT_BACKEND_ERROR;
  }
  b->host = *host;
  *out = (mint_backend *)b;
  return MINT_BACKEND_OK;
}

static int32_t submit(mint_backend *backend, const mint_backend_batch *batch) {
  instance *b = (instance *)backend;
  size_t n = batch->count;
  switch (b->mode) {
    case ECHO: {
      float *scores = malloc(n * sizeof *scores);
      for (size_t i = 0; i < n; i++) scores[i] = (float)(batch->sample_ids[i] % 100) / 100.0f;
      b->host.on_scores(b->host.host_data, batch->sample_ids, scores, n);
      free(scores);
      return MINT_BACKEND_OK;
    }
    case FAIL_SUBMIT:
      last = "test plugin: the server is on fire";
      return MINT_BACKEND_ERROR;
    case FAIL_ANSWER:
      b->host.on_failure(b->host.host_data, batch->sample_ids, n, "test plugin: timed out after 3 retries");
      return MINT_BACKEND_OK;
    case STRANGER: {
      uint64_t *ids = malloc(n * sizeof *ids);
      float *scores = calloc(n, sizeof *scores);
      for (size_t i = 0; i < n; i++) ids[i] = batch->sample_ids[i] + 1000000;
      b->host.on_scores(b->host.host_data, ids, scores, n);
      free(ids);
      free(scores);
      return MINT_BACKEND_OK;
    }
    case WILD: {
      static const float wild[4] = {1.8e37f, -0.5f, NAN, 1.5f};
      float *scores = malloc(n * sizeof *scores);
      for (size_t i = 0; i < n; i++) scores[i] = wild[i % 4];
      b->host.on_scores(b->host.host_data, batch->sample_ids, scores, n);
      free(scores);
      return MINT_BACKEND_OK;
    }
    default:
      return MINT_BACKEND_OK;
  }
}

#ifndef NO_FLUSH
static size_t flush(mint_backend *backend, uint32_t timeout_ms) {
  instance *b = (instance *)backend;
  if (b->mode != NEVER) return 0;
  struct timespec t = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
  return 1;
}
#endif

static void destroy(mint_backend *backend) { free(backend); }

static const char *last_error(const mint_backend *backend) {
  (void)backend;
  return last;
}

static const mint_backend_api api = {
    .abi_major = ABI_MAJOR,
    .abi_minor = MINT_BACKEND_ABI_MINOR,
#ifdef SHORT_TABLE
    .struct_size = 24,
#else
    .struct_size = sizeof(mint_backend_api),
#endif
    .name = "c-test",
    .version = "0",
    .create = create,
    .submit = submit,
#ifndef NO_FLUSH
    .flush = flush,
#endif
    .destroy = destroy,
    .last_error = last_error,
    .render_metrics = NULL,
};

#ifndef NO_ENTRY
const mint_backend_api *mint_backend_entry(void) { return &api; }
#else
const mint_backend_api *not_the_entry(void) { return &api; }
#endif
