// The MINT transparency console's page: lists the models, sends the chosen images to
// /api/analyze, shows the report the console computed (plain words first, numbers beside),
// and saves the evidence bundle. No cookies, no storage, nothing from other sites.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], files: [], bundle: null, envelope: null, signer: null, limits: null };

function text(tag, content, className) {
  const el = document.createElement(tag);
  if (content !== undefined && content !== null) el.textContent = String(content);
  if (className) el.className = className;
  return el;
}

const pct = (x, digits = 1) => (x === null || x === undefined ? "unknown" : (100 * x).toFixed(digits) + "%");
// Below the `scores` disclosure the console sends bands ("< 0.001", "0.7–0.8") as text: shown as sent.
const num = (x, digits = 3) => (x === null || x === undefined ? "—" : typeof x === "string" ? x : Number(x).toFixed(digits));
const pval = (p) => (p === null || p === undefined ? "—" : typeof p === "string" ? p : p < 1e-4 ? Number(p).toExponential(1) : Number(p).toFixed(4));
const flagText = (img) => (img.flagged === undefined ? "not disclosed" : img.flagged ? "flagged" : "not flagged");
// What this console discloses, in words (docs/security.md).
const DISCLOSURE = {
  scores: "This console shows every score.",
  flags: "This console shows, per image, only whether it is flagged at the calibrated threshold, and for the set the test's " +
    "decision and what follows from the flags: exact scores would let anyone test whether a stranger's photo was used.",
  sets: "This console answers about sets only: the set-level test's decision, nothing per image.",
};

async function loadModels() {
  let body;
  try {
    const response = await fetch("/api/models", { cache: "no-store" });
    body = await response.json();
  } catch (e) {
    showError("The console cannot be reached. Check that it is still running, then reload the page.");
    return;
  }
  state.models = body.models;
  state.limits = body.limits;
  state.signer = body.signer;
  $("version").textContent = body.mint_version;
  $("signer").textContent = body.signer.fingerprint + (body.signer.ephemeral ? " (a key drawn when this console started)" : "");
  const select = $("model");
  const chosen = select.value;
  select.replaceChildren(
    ...body.models.map((m) => {
      const option = text("option", (m.card ? m.card.title : m.id) + (m.status === "ready" ? "" : ` (${m.status})`));
      option.value = m.id;
      option.disabled = m.status !== "ready";
      return option;
    })
  );
  const ready = body.models.filter((m) => m.status === "ready");
  if (ready.some((m) => m.id === chosen)) select.value = chosen;
  else if (ready.length) select.value = ready[0].id;
  select.disabled = ready.length === 0;
  showCard();
  updateButton();
  if (body.models.some((m) => m.status === "loading")) setTimeout(loadModels, 2000);
}

function currentModel() {
  return state.models.find((m) => m.id === $("model").value);
}

function showCard() {
  const card = $("card");
  const model = currentModel();
  card.replaceChildren();
  if (!model) {
    card.append(text("p", "The models are starting up: the console scores their reference images first. This takes a minute."));
    return;
  }
  if (model.status === "failed") {
    card.append(text("p", "This model is unavailable: it failed to load on this console.", "out"));
    return;
  }
  const c = model.card;
  card.append(text("p", c.description));
  const dl = document.createElement("dl");
  const row = (k, v) => dl.append(text("dt", k), text("dd", v));
  row("Its data", c.domain);
  if (c.training && c.training.members) row("Images it was trained on", Number(c.training.members).toLocaleString("en"));
  if (c.training && c.training.architecture) row("Architecture", c.training.architecture);
  const cal = c.calibration;
  row("False alarms per image", `${pct(cal.fpr.estimate)} of images it never saw are flagged (95%: ${pct(cal.fpr.low)}–${pct(cal.fpr.high)}), calibrated on ${cal.non_members}`);
  row("Training images found per image", `${pct(cal.tpr.estimate)} (95%: ${pct(cal.tpr.low)}–${pct(cal.tpr.high)}), on ${cal.members} held-out training images`);
  row("Separation (AUC)", `${num(c.measured_here.auc)}: ${c.measured_here.what}`);
  row("Calibration reproduced here", cal.reproduced ? "yes: the same reference images are flagged" : "NO: this console flags other reference images than the calibration did");
  row("Compared against", c.reference.description);
  row("Head fingerprint", c.head.sha256);
  card.append(dl);
  const can = text("p", "What its evidence can say: whether a set of images scores higher than images the model never saw, " +
    "which happens when the model remembers them. What it cannot say: that an image was not used, or anything about images " +
    "unlike its data.", "small");
  card.append(can);
}

function chooseFiles(list) {
  state.files = Array.from(list);
  const n = state.files.length;
  const bytes = state.files.reduce((s, f) => s + f.size, 0);
  $("chosen").textContent = n === 0 ? "No images chosen." : `${n} file${n === 1 ? "" : "s"} chosen (${(bytes / 1024).toFixed(0)} KiB).`;
  hideError();
  updateButton();
}

function updateButton() {
  const model = currentModel();
  $("analyze").disabled = !(model && model.status === "ready" && state.files.length > 0);
}

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = false;
}

function hideError() {
  $("error").hidden = true;
}

function analyze() {
  const model = currentModel();
  const limits = state.limits;
  const bytes = state.files.reduce((s, f) => s + f.size, 0);
  if (limits && bytes > limits.max_upload_bytes) {
    showError(`The upload is too large: at most ${Math.floor(limits.max_upload_bytes / 1048576)} MB per request. Send fewer or smaller images.`);
    return;
  }
  const form = new FormData();
  for (const f of state.files) form.append("images", f, f.name);
  const request = new XMLHttpRequest();
  request.open("POST", "/api/analyze?model=" + encodeURIComponent(model.id));
  request.responseType = "json";
  const progress = $("progress");
  $("progress-box").hidden = false;
  $("analyze").disabled = true;
  hideError();
  progress.value = 0;
  $("status").textContent = "Sending your images…";
  request.upload.onprogress = (e) => {
    if (e.lengthComputable) progress.value = (100 * e.loaded) / e.total;
  };
  request.upload.onload = () => {
    progress.removeAttribute("value"); // indeterminate while the console works
    $("status").textContent = `Scoring ${state.files.length} file${state.files.length === 1 ? "" : "s"} through the audited model…`;
  };
  request.onload = () => {
    $("progress-box").hidden = true;
    updateButton();
    const body = request.response;
    const bundle = request.status === 200 && body && body.payload ? signedBundle(body) : null;
    if (bundle && bundle.evidence) {
      state.envelope = body;
      showReport(bundle);
    } else {
      showError(body && body.error ? body.error : `The console answered ${request.status}; try again.`);
    }
  };
  request.onerror = () => {
    $("progress-box").hidden = true;
    updateButton();
    showError("The connection to the console failed; check that it is still running and try again.");
  };
  request.send(form);
}

// The bundle is the signed statement's predicate: decoded from the envelope's payload, so that
// the page shows exactly what was signed.
function signedBundle(envelope) {
  try {
    const bytes = Uint8Array.from(atob(envelope.payload), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes)).predicate;
  } catch (e) {
    return null;
  }
}

function showReport(bundle) {
  state.bundle = bundle;
  const e = bundle.evidence;
  const report = $("report");
  report.dataset.outcome = e.verdict.outcome;
  $("verdict").className = "verdict " + e.verdict.outcome;
  $("verdict-headline").textContent = e.verdict.headline;
  $("verdict-explanation").textContent = e.verdict.explanation;
  $("caveats").replaceChildren(...e.caveats.map((c) => text("li", c)));

  const s = e.set;
  const exact = e.disclosure === undefined || e.disclosure === "scores";
  const flagsTold = s.flagged !== null;
  const rows = [
    ["Images tested", s.images],
    flagsTold && ["Flagged one by one (score ≥ the calibrated threshold)", `${s.flagged} of ${s.images}`],
    ["Set-level test: chance probability (rank test, p)", pval(s.rank_test.p_value)],
    ["Decision level", `p < ${e.alpha}`],
    exact && ["How far your images' scores lie above the unused ones' (AUC; 0.5 = no difference)", num(s.rank_test.auc)],
    flagsTold && ["Flags against the false-alarm rate (binomial test, p)", pval(s.binomial_test.p_value)],
    flagsTold && ["Share of your images probably in the training data (95%)",
      s.member_fraction.low === null ? "cannot be estimated with this head" :
        s.member_fraction.high - s.member_fraction.low >= 0.9 ?
          `cannot be pinned down from these images (95%: ${pct(s.member_fraction.low, 0)}–${pct(s.member_fraction.high, 0)})` :
          s.member_fraction.estimate === null ? `${pct(s.member_fraction.low, 0)}–${pct(s.member_fraction.high, 0)} (95%)` :
            `${pct(s.member_fraction.estimate, 0)} (95%: ${pct(s.member_fraction.low, 0)}–${pct(s.member_fraction.high, 0)})`],
    exact && ["Images needed to decide at the difference seen (80% power)", s.images_needed === null ? "no number would do" : s.images_needed],
    ["Images that look unlike the model's data", `${s.distribution_shift.out_of_domain} of ${s.images}`],
    ["Raw-pixel classifier vs the model's data (AUC)", s.distribution_shift.blind_auc === null ? "needs 10 images or more" :
      `${num(s.distribution_shift.blind_auc)} (p = ${pval(s.distribution_shift.blind_p_value)})`],
    ["Distribution shift", s.distribution_shift.detected ? "DETECTED: the verdict means nothing" : "not detected"],
    ["Reference (never used in training)", e.reference.description],
    ["Model, version, head", `${e.model.id} v${e.model.version}, ${e.head.kind} head ${e.head.sha256.slice(0, 16)}…`],
    ["What this console discloses", DISCLOSURE[e.disclosure] || e.disclosure],
  ];
  $("set-numbers").tBodies[0].replaceChildren(...rows.filter(Boolean).map(([k, v]) => {
    const tr = document.createElement("tr");
    tr.append(text("th", k), text("td", v));
    return tr;
  }));

  const byName = new Map(state.files.map((f) => [f.name, f]));
  $("images").tBodies[0].replaceChildren(...e.images.map((img) => {
    const tr = document.createElement("tr");
    const thumb = document.createElement("td");
    const file = byName.get(img.file);
    if (file && /\.(png|jpe?g)$/i.test(file.name)) {
      const i = document.createElement("img");
      i.src = URL.createObjectURL(file);
      i.alt = img.file;
      thumb.append(i);
    }
    const name = img.index === null ? img.file : `${img.file} #${img.index}`;
    const fileCell = text("td", name);
    if (img.note) fileCell.append(text("div", img.note, "small"));
    tr.append(
      thumb,
      fileCell,
      text("td", num(img.score, 4)),
      text("td", flagText(img), img.flagged ? "flag" : ""),
      text("td", img.in_domain ? "yes" : "no", img.in_domain ? "" : "out"),
      text("td", img.sha256, "hash")
    );
    return tr;
  }));
  report.hidden = false;
  report.scrollIntoView();
}

function download(name, type, content) {
  const url = URL.createObjectURL(new Blob([content], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// A standalone page of the report, to print or file: it holds the evidence as text, no image.
function printable(bundle) {
  const e = bundle.evidence;
  const rows = Array.from($("set-numbers").tBodies[0].rows)
    .map((r) => `<tr><th>${escapeHtml(r.cells[0].textContent)}</th><td>${escapeHtml(r.cells[1].textContent)}</td></tr>`).join("");
  const images = e.images.map((i) => `<tr><td>${escapeHtml(i.file)}${i.index === null ? "" : " #" + i.index}</td>` +
    `<td>${num(i.score, 4)}</td><td>${flagText(i)}</td><td>${i.in_domain ? "yes" : "no"}</td>` +
    `<td style="font-family:monospace;font-size:9pt">${escapeHtml(i.sha256)}</td></tr>`).join("");
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>MINT evidence: ${escapeHtml(e.model.id)}</title>
<style>body{font:11pt/1.4 sans-serif;margin:2cm}table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ccc;padding:3px 6px;text-align:left}th{font-weight:normal;color:#555}</style></head><body>
<h1>MINT evidence report</h1>
<p>Issued ${escapeHtml(bundle.issued_at)} by mint-audit ${escapeHtml(e.mint_version)}. Evidence sha256: <code>${escapeHtml(bundle.evidence_sha256)}</code>.
Signed by <code>${escapeHtml(bundle.signer.fingerprint)}</code>.</p>
<h2>${escapeHtml(e.verdict.headline)}</h2><p>${escapeHtml(e.verdict.explanation)}</p>
<h3>Caveats</h3><ul>${e.caveats.map((c) => `<li>${escapeHtml(c)}</li>`).join("")}</ul>
<h3>Numbers</h3><table>${rows}</table>
<h3>Images</h3><table><tr><th>File</th><th>Score</th><th>One by one</th><th>Like the model's data</th><th>sha256</th></tr>${images}</table>
<h3>Verify</h3><p>With the same image files and the JSON bundle: <code>mint verify-bundle --bundle BUNDLE.json --fingerprint ${escapeHtml(bundle.signer.fingerprint)} IMAGES…</code></p>
</body></html>`;
}

function setup() {
  $("model").addEventListener("change", () => { showCard(); updateButton(); });
  $("files").addEventListener("change", (e) => chooseFiles(e.target.files));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); chooseFiles(e.dataTransfer.files); });
  $("analyze").addEventListener("click", analyze);
  $("download-json").addEventListener("click", () =>
    download(`mint-evidence-${state.bundle.evidence.model.id}.json`, "application/json", JSON.stringify(state.envelope, null, 2)));
  $("download-html").addEventListener("click", () =>
    download(`mint-evidence-${state.bundle.evidence.model.id}.html`, "text/html", printable(state.bundle)));
  $("print").addEventListener("click", () => window.print());
  loadModels();
}

document.addEventListener("DOMContentLoaded", setup);
