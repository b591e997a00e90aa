/*
 * A serving loop audited by mint-audit, through the C API.
 *
 * Four "serving threads" answer classification requests with the shipped Fashion-MNIST
 * model. They let mint-audit run the model (mint_auditor_infer): each call returns the
 * model's logits for the request and, on the same thread, hands the taps of the audited
 * layers to the auditor, which scores them with the MINT head on its own workers. Half the
 * requests are known members of the model's training set, tagged as the "suspect" cohort;
 * half are known non-members, tagged as the "reference" cohort (when the configuration
 * declares those cohorts; else all is "default"). At the end the demo prints how many of each
 * the head flagged, the membership evidence per cohort, and the metrics a regulator scrapes.
 *
 *   serving_demo CONFIG MEMBERS_IDX NON_MEMBERS_IDX [--linger SECONDS] [--part I/N]
 *
 * --linger keeps the /metrics endpoint up that long after serving, for a scraper.
 * --part I/N serves only the requests a load balancer would send to replica I of N (every
 * N-th of each set, from the I-th): N such processes are a fleet serving the whole stream.
 * Build: cc -O2 -std=c11 -pthread serving_demo.c $(pkg-config --cflags --libs mint_audit)
 */
#define _POSIX_C_SOURCE 200809L
#include <mint_audit.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { THREADS = 4, BATCH = 32, CLASSES = 10 };
static const uint64_t NON_MEMBER_IDS = 1ull << 32;

static void die(const char *what, mint_status s) {
  fprintf(stderr, "serving_demo: %s: %s: %s\n", what, mint_status_name(s), mint_last_error());
  exit(1);
}

/* Reads an uncompressed IDX file of unsigned bytes [n, 28, 28] as floats in [0, 1]. */
static float *read_idx(const char *path, size_t *n, size_t *pixels) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(1);
  }
  unsigned char h[16];
  if (fread(h, 1, 16, f) != 16 || h[0] || h[1] || h[2] != 8 || h[3] != 3) {
    fprintf(stderr, "%s: not an IDX file of [n, H, W] bytes\n", path);
    exit(1);
  }
#define BE32(p) ((size_t)(p)[0] << 24 | (size_t)(p)[1] << 16 | (size_t)(p)[2] << 8 | (size_t)(p)[3])
  *n = BE32(h + 4);
  *pixels = BE32(h + 8) * BE32(h + 12);
  size_t len = *n * *pixels;
  unsigned char *raw = malloc(len);
  float *out = malloc(len * sizeof(float));
  if (fread(raw, 1, len, f) != len) {
    fprintf(stderr, "%s: truncated\n", path);
    exit(1);
  }
  for (size_t i = 0; i < len; i++) out[i] = raw[i] / 255.0f;
  free(raw);
  fclose(f);
  return out;
}

/* The value of the series that `prefix` (name, labels and a space) starts; NaN when absent. */
static double metric(const char *text, const char *prefix) {
  for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
    if (strncmp(line, prefix, strlen(prefix)) == 0) return strtod(line + strlen(prefix), NULL);
  return NAN;
}

/* ---- the audit's answers, from the auditor's workers ---------------------------------------- */

typedef struct {
  atomic_ulong flagged[2], scored[2], dropped;
} tally;

static void on_results(void *userdata, const mint_sample_result *r, size_t n) {
  tally *t = userdata;
  for (size_t i = 0; i < n; i++) {
    int set = r[i].sample_id >= NON_MEMBER_IDS; /* 0: known member, 1: known non-member */
    if (r[i].outcome == MINT_OUTCOME_MEMBER || r[i].outcome == MINT_OUTCOME_NON_MEMBER) {
      atomic_fetch_add(&t->scored[set], 1);
      if (r[i].outcome == MINT_OUTCOME_MEMBER) atomic_fetch_add(&t->flagged[set], 1);
    } else {
      atomic_fetch_add(&t->dropped, 1);
    }
  }
}

/* ---- the serving threads ---------------------------------------------------------------- */

/* One request batch: `n` consecutive requests, all of one cohort. */
typedef struct {
  size_t start, n;
  uint32_t cohort;
} batch;

typedef struct {
  const mint_auditor *auditor;
  const float *images;
  const uint64_t *ids;
  const batch *batches;
  size_t count, pixels, n_batches;
  atomic_size_t next;
  atomic_ulong predictions[CLASSES], audit_errors;
} work;

static void *serve(void *p) {
  work *w = p;
  float logits[BATCH * CLASSES];
  for (;;) {
    size_t next = atomic_fetch_add(&w->next, 1);
    if (next >= w->n_batches) return NULL;
    size_t start = w->batches[next].start, n = w->batches[next].n;
    mint_status s = mint_auditor_infer_cohort(w->auditor, w->batches[next].cohort, w->ids + start, n,
                                              w->images + start * w->pixels, n * w->pixels, logits, n * CLASSES, NULL);
    if (s != MINT_OK && s != MINT_ERR_QUEUE_FULL && s != MINT_ERR_NON_FINITE) die("mint_auditor_infer_cohort", s);
    if (s != MINT_OK) atomic_fetch_add(&w->audit_errors, 1); /* counted by the auditor too */
    for (size_t i = 0; i < n; i++) { /* answer the request: the predicted class */
      int best = 0;
      for (int c = 1; c < CLASSES; c++)
        if (logits[i * CLASSES + c] > logits[i * CLASSES + best]) best = c;
      atomic_fetch_add(&w->predictions[best], 1);
    }
  }
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  double linger = 0;
  unsigned part = 0, parts = 1;
  int usage = argc < 4;
  for (int i = 4; i < argc && !usage; i += 2) {
    if (i + 1 >= argc)
      usage = 1;
    else if (strcmp(argv[i], "--linger") == 0)
      linger = atof(argv[i + 1]);
    else if (strcmp(argv[i], "--part") == 0)
      usage = sscanf(argv[i + 1], "%u/%u", &part, &parts) != 2 || parts == 0 || part >= parts;
    else
      usage = 1;
  }
  if (usage) {
    fprintf(stderr, "usage: %s CONFIG MEMBERS_IDX NON_MEMBERS_IDX [--linger SECONDS] [--part I/N]\n", argv[0]);
    return 2;
  }
  /* Cohorts arrived in ABI 1.2: a library older than the header cannot serve this program. */
  if ((mint_abi_version() >> 16) != MINT_ABI_VERSION_MAJOR || (mint_abi_version() & 0xffff) < MINT_ABI_VERSION_MINOR) {
    fprintf(stderr, "libmint_audit ABI %u.%u is older than the header's %d.%d\n", mint_abi_version() >> 16,
            mint_abi_version() & 0xffff, MINT_ABI_VERSION_MAJOR, MINT_ABI_VERSION_MINOR);
    return 1;
  }

  /* Requests: batches of known members and of known non-members, alternating. */
  size_t nm, nn, pm, pn;
  float *members = read_idx(argv[2], &nm, &pm);
  float *non_members = read_idx(argv[3], &nn, &pn);
  if (pm != pn) {
    fprintf(stderr, "the two sets have different image sizes\n");
    return 1;
  }
  /* This replica's share: every parts-th sample of each set, from the part-th; ids stay those
   * of the whole stream. */
  size_t keep_m = nm / parts + (part < nm % parts), keep_n = nn / parts + (part < nn % parts);
  for (size_t k = 0; k < keep_m; k++) memmove(members + k * pm, members + (k * parts + part) * pm, pm * sizeof(float));
  for (size_t k = 0; k < keep_n; k++)
    memmove(non_members + k * pn, non_members + (k * parts + part) * pn, pn * sizeof(float));
  nm = keep_m;
  nn = keep_n;
  size_t count = nm + nn;
  float *images = malloc(count * pm * sizeof(float));
  uint64_t *ids = malloc(count * sizeof(uint64_t));
  size_t max_batches = nm / BATCH + nn / BATCH + 2, n_batches = 0;
  batch *batches = malloc(max_batches * sizeof(batch));
  int *batch_set = malloc(max_batches * sizeof(int));
  for (size_t i = 0, a = 0, b = 0; i < count; n_batches++) {
    int take_member = (n_batches % 2 == 0 && a < nm) || b >= nn;
    size_t left = take_member ? nm - a : nn - b, n = left < BATCH ? left : BATCH;
    batches[n_batches] = (batch){.start = i, .n = n};
    batch_set[n_batches] = !take_member;
    for (size_t k = 0; k < n; k++, i++) {
      const float *src = take_member ? members + a * pm : non_members + b * pm;
      memcpy(images + i * pm, src, pm * sizeof(float));
      ids[i] = take_member ? (a++) * parts + part : NON_MEMBER_IDS + (b++) * parts + part;
    }
  }

  tally t = {0};
  mint_result_sink sink = {on_results, &t, NULL};
  mint_auditor *auditor = NULL;
  mint_status s = mint_auditor_new_from_file(argv[1], &sink, &auditor);
  if (s != MINT_OK) die("mint_auditor_new_from_file", s);
  char addr[64] = "", sha[65] = "";
  size_t len;
  if ((s = mint_auditor_metrics_address(auditor, addr, sizeof addr, &len)) != MINT_OK) die("metrics address", s);
  if ((s = mint_auditor_head_sha256(auditor, sha, sizeof sha, &len)) != MINT_OK) die("head sha256", s);
  printf("mint-audit %s: auditing with head %.12s..., metrics at http://%s/metrics\n", mint_version(), sha,
         addr[0] ? addr : "(endpoint off)");

  /* Members go to the "suspect" cohort, non-members to "reference", where declared. */
  static const char *const COHORT_NAMES[2] = {"suspect", "reference"};
  uint32_t cohorts[2] = {MINT_COHORT_DEFAULT, MINT_COHORT_DEFAULT};
  int tagged = 1;
  for (int set = 0; set < 2; set++)
    if (mint_auditor_cohort(auditor, COHORT_NAMES[set], &cohorts[set]) != MINT_OK) tagged = 0;
  if (!tagged) {
    cohorts[0] = cohorts[1] = MINT_COHORT_DEFAULT;
    printf("the configuration declares no \"suspect\" and \"reference\" cohorts: all requests go to \"default\"\n");
  }
  for (size_t i = 0; i < n_batches; i++) batches[i].cohort = cohorts[batch_set[i]];
  fflush(stdout);

  work w = {.auditor = auditor, .images = images, .ids = ids, .batches = batches, .count = count, .pixels = pm,
            .n_batches = n_batches};
  double t0 = now();
  pthread_t threads[THREADS];
  for (int i = 0; i < THREADS; i++) pthread_create(&threads[i], NULL, serve, &w);
  for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
  double served = now() - t0;
  printf("served %zu requests on %d threads in %.2f s (%.0f requests/s); predicted classes:", count, THREADS,
         served, count / served);
  for (int c = 0; c < CLASSES; c++) printf(" %lu", atomic_load(&w.predictions[c]));
  printf("\n");

  if (linger > 0) {
    printf("metrics endpoint up for %.0f s more\n", linger);
    fflush(stdout);
    struct timespec pause = {(time_t)linger, (long)((linger - (time_t)linger) * 1e9)};
    nanosleep(&pause, NULL);
  }

  mint_close_report closed;
  if ((s = mint_auditor_close(auditor, 30000, &closed)) != MINT_OK) die("close", s);
  mint_stats st = closed.stats;
  unsigned long fm = atomic_load(&t.flagged[0]), fn = atomic_load(&t.flagged[1]);
  unsigned long sm = atomic_load(&t.scored[0]), sn = atomic_load(&t.scored[1]);
  printf("\nMINT audit (threshold from the configuration):\n");
  printf("  known members      %5zu requests, %5lu scored, flagged as members: %5lu (%.1f%%)\n", nm, sm, fm,
         sm ? 100.0 * fm / sm : 0.0);
  printf("  known non-members  %5zu requests, %5lu scored, flagged as members: %5lu (%.1f%%)\n", nn, sn, fn,
         sn ? 100.0 * fn / sn : 0.0);

  /* The false-positive rate calibration promised, against the one these non-members show (the
   * demo's non-members are ones calibration did not use: research/mint_research/demo_samples.py). */
  size_t need = 0;
  mint_auditor_render_metrics(auditor, NULL, 0, &need);
  char *text = malloc(need);
  if ((s = mint_auditor_render_metrics(auditor, text, need, &len)) != MINT_OK) die("render metrics", s);
  double fpr_low = metric(text, "mint_calibration_rate{bound=\"low\",rate=\"fpr\"} ");
  double fpr_high = metric(text, "mint_calibration_rate{bound=\"high\",rate=\"fpr\"} ");
  double measured = sn ? (double)fn / sn : 0.0;
  if (fpr_low == fpr_low && fpr_high == fpr_high) /* not NaN: calibrated */
    printf("  calibrated FPR interval [%.4f, %.4f] (95%%); the known non-members' %.4f lies %s it\n", fpr_low,
           fpr_high, measured, fpr_low <= measured && measured <= fpr_high ? "inside" : "OUTSIDE");
  else
    printf("  uncalibrated threshold: its false-positive rate is unknown (mint eval --calibrate)\n");
  unsigned long long dropped = st.dropped_queue_full + st.dropped_invalid_input + st.dropped_non_finite +
                               st.dropped_over_budget + st.dropped_head_error + st.dropped_backend_error +
                               st.dropped_shutdown + st.dropped_closed;
  printf("  accounting: submitted %llu = audited %llu + dropped %llu\n", (unsigned long long)st.submitted,
         (unsigned long long)(st.audited_member + st.audited_non_member), dropped);

  /* The evidence a regulator acts on: per cohort, against the calibrated FPR and the reference. */
  if (tagged) {
    static const char *const WHO[2] = {"known members", "known non-members"};
    printf("\nmembership evidence per cohort (docs/evidence.md):\n");
    for (int set = 0; set < 2; set++) {
      mint_cohort_evidence e;
      if ((s = mint_auditor_cohort_evidence(auditor, cohorts[set], &e)) != MINT_OK) die("cohort evidence", s);
      printf("  %-9s (%s): %llu audited, %llu flagged; ", COHORT_NAMES[set], WHO[set],
             (unsigned long long)e.audited, (unsigned long long)e.flagged);
      if (e.member_fraction == e.member_fraction) /* not NaN */
        printf("member fraction %.2f [%.2f, %.2f]\n", e.member_fraction, e.member_fraction_low,
               e.member_fraction_high);
      else /* uncalibrated, or a head whose TPR interval reaches down to its FPR's */
        printf("member fraction not identifiable with this head\n");
      printf("             %llu windows; binomial test (flags vs the calibrated FPR): %llu alarms, last p = %.3g\n",
             (unsigned long long)e.windows, (unsigned long long)e.binomial_alarms, e.window_binomial_p);
      if (set == 0) { /* the reference is not tested against itself */
        printf("             rank test against the reference: %llu alarms, last p = %.3g\n",
               (unsigned long long)e.rank_alarms, e.window_rank_p);
        printf("             all scores against the reference: AUC %.3f, z %.2f, p = %.3g\n", e.overall_auc,
               e.overall_rank_z, e.overall_rank_p);
      }
      /* Valid at every look: what a regulator reads continuously. */
      mint_cohort_anytime a;
      if ((s = mint_auditor_cohort_anytime(auditor, cohorts[set], &a)) != MINT_OK) die("cohort anytime", s);
      printf("             anytime: flags e = %.3g (p = %.3g)", a.flags_e_value, a.flags_p_value);
      if (set == 0)
        printf(", scores vs reference e = %.3g (p = %.3g)", a.scores_e_value, a.scores_p_value);
      printf("; member share in [%.2f, %.2f] (95%%, every look)\n", a.member_fraction_low, a.member_fraction_high);
      if (a.certificate == a.certificate) /* not NaN */
        printf("             certificate: fewer than %.1f%% of this cohort were training members (95%%)\n",
               100.0 * a.certificate);
      else if (a.member_fraction_high >= 1.0)
        printf("             certificate: nothing to certify: up to 100%% members is consistent with what was seen\n");
      else /* uncalibrated */
        printf("             certificate: cannot certify with this head\n");
    }
  }

  /* What a regulator's Prometheus sees (histogram buckets left out). */
  printf("\nmetrics:\n");
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
    if (line[0] != '#' && !strstr(line, "_bucket{")) printf("  %s\n", line);
  free(text);

  mint_auditor_free(auditor);
  free(images);
  free(ids);
  free(batches);
  free(batch_set);
  free(members);
  free(non_members);
  return st.submitted == st.audited_member + st.audited_non_member + dropped ? 0 : 1;
}
