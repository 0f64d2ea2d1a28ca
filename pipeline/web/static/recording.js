// The recording page: play from a segment, follow playback, decide themes, add one from a
// selection, correct text in place (with the conflict shown when someone else saved first).
"use strict";

const audio = document.getElementById("audio");  // null for a transcript imported without audio
const segments = Array.from(document.querySelectorAll(".segment"));
const canEdit = document.getElementById("transcript").dataset.canEdit === "yes";
let current = null;

function setCurrent(segment, scroll) {
  if (segment === current) return;
  if (current) current.classList.remove("playing");
  current = segment;
  if (!segment) return;
  segment.classList.add("playing");
  if (scroll) segment.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

function segmentAt(time) {
  return segments.find((s) => Number(s.dataset.start) <= time && time < Number(s.dataset.end)) || null;
}

function playFrom(segment) {
  setCurrent(segment, true);
  if (!audio) return;
  audio.currentTime = Number(segment.dataset.start);
  audio.play().catch(() => say("press play to listen", false));
}

if (audio) {
  audio.addEventListener("timeupdate", () => {
    const found = segmentAt(audio.currentTime);
    if (found) setCurrent(found, true);
  });
}

// Opened from a search hit: ?t=seconds
const startParam = new URLSearchParams(location.search).get("t");
const startAt = Number(startParam);
if (startParam !== null && Number.isFinite(startAt)) {
  if (audio) audio.currentTime = startAt;
  setCurrent(segmentAt(startAt + 0.001) || segments.find((s) => Number(s.dataset.start) >= startAt) || null, true);
}

// ---- themes: accept / reject

function progress(delta) {
  const decided = document.getElementById("decided");
  decided.textContent = String(Number(decided.textContent) + delta);
  document.getElementById("progress").value = Number(decided.textContent);
}

async function decide(item, status) {
  const before = item.dataset.status;
  const result = await api("PATCH", `/api/annotations/${item.dataset.id}`, { status, version: Number(item.dataset.version) });
  const annotation = result.status === 409 ? result.data.current : result.data;
  if (!result.ok && result.status !== 409) return say(result.data.detail, true);
  item.dataset.version = annotation.version;
  item.dataset.status = annotation.status;
  item.className = `theme ${annotation.status} t${annotation.colour}`;
  item.querySelector(".status").textContent = annotation.status;
  progress((annotation.status !== "suggested" ? 1 : 0) - (before !== "suggested" ? 1 : 0));
  if (result.status === 409) say(`${result.data.detail}: it is now ${annotation.status}`, true);
  else say(`${annotation.label}: ${annotation.status}`, false);
}

document.getElementById("transcript").addEventListener("click", (event) => {
  const button = event.target.closest("button");
  const segment = event.target.closest(".segment");
  if (button && button.classList.contains("accept")) return decide(button.closest(".theme"), "accepted");
  if (button && button.classList.contains("reject")) return decide(button.closest(".theme"), "rejected");
  if (button && button.classList.contains("edit")) return edit(segment);
  if (event.target.closest("a, textarea, .editor")) return;
  if (segment && !window.getSelection().toString()) playFrom(segment);
});

// ---- add a theme from a text selection: its character offsets become the evidence

const popup = document.getElementById("add-theme");
let selection = null;

// Offsets count characters (code points), as the server's do: a string's length counts UTF-16 units, two for a
// character beyond the Basic Multilingual Plane (𠮷 in a name), which would shift every offset after it.
function offsetIn(container, node, offset) {
  const range = document.createRange();
  range.setStart(container, 0);
  range.setEnd(node, offset);
  return Array.from(range.toString()).length;
}

function characters(text, start, end) {
  return Array.from(text).slice(start, end).join("");
}

// The words selected in one segment's text: { text, start, end }, or null.
function selectedWords() {
  const chosen = window.getSelection();
  if (chosen.isCollapsed || !chosen.rangeCount) return null;
  const range = chosen.getRangeAt(0);
  const text = range.commonAncestorContainer.nodeType === Node.TEXT_NODE
    ? range.commonAncestorContainer.parentElement.closest(".text")
    : range.commonAncestorContainer.closest && range.commonAncestorContainer.closest(".text");
  if (!text) return null;
  const start = offsetIn(text, range.startContainer, range.startOffset);
  const end = offsetIn(text, range.endContainer, range.endOffset);
  return end > start ? { text, start, end } : null;
}

function offer(words) {
  selection = { segment: words.text.closest(".segment"), start: words.start, end: words.end };
  document.getElementById("selected").textContent = characters(words.text.textContent, words.start, words.end);
  popup.hidden = false;
}

document.addEventListener("mouseup", () => {
  const words = canEdit && selectedWords();
  if (words) offer(words);
});

// t: the same from the keyboard, on the words selected in the current segment or else its whole text; the
// theme list takes the focus, and closing the form gives it back to the segment.
function offerByKeyboard(segment) {
  const text = segment.querySelector(".text");
  const words = selectedWords();
  offer(words && words.text === text ? words : { text, start: 0, end: Array.from(text.textContent).length });
  popup.elements.theme.focus();
}

function closePopup() {
  const hadFocus = popup.contains(document.activeElement);
  popup.hidden = true;
  if (hadFocus && selection) selection.segment.focus();
}

document.getElementById("add-cancel").addEventListener("click", closePopup);
popup.addEventListener("keydown", (event) => { if (event.key === "Escape") closePopup(); });

popup.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!selection) return;
  const theme = popup.elements.theme.value;
  // The version the offsets are into: if someone corrected the text since, they would be on other words (409).
  const version = Number(selection.segment.dataset.version);
  const result = await api("POST", `/api/segments/${selection.segment.dataset.id}/annotations`, { theme, evidence: [[selection.start, selection.end]], version });
  if (!result.ok) return say(result.data.detail, true);
  closePopup();
  say(`${result.data.label} added`, false);
  showTheme(selection.segment, result.data);
  mark(selection.segment.querySelector(".text"), selection.start, selection.end, result.data);
});

function showTheme(segment, annotation) {
  const list = segment.querySelector(".themes");
  let item = list.querySelector(`.theme[data-id="${annotation.id}"]`);
  if (!item) {
    item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    const name = document.createElement("span");
    name.className = "name";
    name.title = annotation.theme;
    name.textContent = annotation.label;
    const status = document.createElement("span");
    status.className = "status";
    item.append(swatch, name, " ", status);
    for (const [cls, label] of [["accept", "Accept"], ["reject", "Reject"]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = cls;
      button.textContent = label;
      button.setAttribute("aria-label", `${label} ${annotation.label}`);
      item.append(button);
    }
    list.append(item);
    const total = document.getElementById("total");
    total.textContent = String(Number(total.textContent) + 1);
    document.getElementById("progress").max = Number(total.textContent);
    progress(1);
  }
  item.className = `theme ${annotation.status} t${annotation.colour}`;
  item.dataset.id = annotation.id;
  item.dataset.theme = annotation.theme;
  item.dataset.version = annotation.version;
  item.dataset.status = annotation.status;
  item.querySelector(".status").textContent = annotation.status;
}

function mark(element, start, end, annotation) {
  // Re-render the text as plain text with one marked stretch (other marks come back on reload).
  const text = element.textContent;
  const highlighted = document.createElement("mark");
  highlighted.className = `t${annotation.colour}`;
  highlighted.title = annotation.label;
  highlighted.textContent = characters(text, start, end);
  element.replaceChildren(characters(text, 0, start), highlighted, characters(text, end));
}

// ---- correct text in place

function edit(segment) {
  if (segment.querySelector(".editor")) return;
  const text = segment.querySelector(".text");
  const editor = document.createElement("div");
  editor.className = "editor";
  const area = document.createElement("textarea");
  area.value = text.textContent;
  area.rows = 3;
  area.lang = text.lang;
  area.setAttribute("aria-label", `Text of the segment at ${segment.querySelector(".clock").textContent}`);
  const save = document.createElement("button");
  save.type = "button";
  save.textContent = "Save";
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.textContent = "Cancel";
  const conflict = document.createElement("p");
  conflict.className = "conflict";
  conflict.setAttribute("role", "alert");  // read out whole: whose version it is, and what it says
  conflict.hidden = true;
  editor.append(area, save, cancel, conflict);
  text.hidden = true;
  segment.querySelector(".tools").before(editor);
  area.focus();
  // Back to the segment: the focus would otherwise fall to the page's start with the editor.
  const close = () => { editor.remove(); text.hidden = false; segment.focus(); };
  cancel.addEventListener("click", close);
  area.addEventListener("keydown", (event) => { if (event.key === "Escape") close(); });
  save.addEventListener("click", async () => {
    const result = await api("PATCH", `/api/segments/${segment.dataset.id}`, { text: area.value, version: Number(segment.dataset.version) });
    if (result.status === 409) {
      const theirs = result.data.current;
      // Saving again now would be a deliberate overwrite of their version, which they can see.
      segment.dataset.version = theirs.version;
      conflict.textContent = `Conflict: ${theirs.changed_by || "someone"} saved this segment first (version ${theirs.version}): “${theirs.text}”. Save again to replace it with yours, or Cancel to keep theirs.`;
      conflict.hidden = false;
      text.textContent = theirs.text;
      return say("conflict: someone else changed this segment", true);
    }
    if (!result.ok) return say(result.data.detail, true);
    // The text it had changes nothing (no new version): its doubtful words stay doubtful, and underlined.
    if (result.data.version !== Number(segment.dataset.version)) text.textContent = result.data.text;
    segment.dataset.version = result.data.version;
    close();
    say("text saved", false);
  });
}

// ---- doubtful passages: d plays the next one (in page order) from a little before it. Looked up at each
// press: a correction saved here writes its segment's text anew, without them (a person's text is not doubtful).

const LEAD_IN = 1.5; // s of audio before a passage, to hear it in its context
let played = null; // the passage d played last, and its segment
let playedSegment = null;

function nextDoubtful() {
  const doubtful = Array.from(document.querySelectorAll(".doubtful"));
  if (played) played.classList.remove("current");
  if (!doubtful.length) return say("no doubtful words here", false);
  // The next after the last one played; when a correction took that one away, the next after its segment.
  const after = played && (played.isConnected ? played : playedSegment);
  const follows = (p) => (after.compareDocumentPosition(p) & Node.DOCUMENT_POSITION_FOLLOWING) && !after.contains(p);
  const passage = (after && doubtful.find(follows)) || doubtful[0];
  played = passage;
  playedSegment = passage.closest(".segment");
  passage.classList.add("current");
  setCurrent(playedSegment, true);
  playedSegment.focus({ preventScroll: true });
  // Said in the status line too, for a screen reader: an underline is not read out.
  say(`doubtful: “${passage.textContent}” at ${playedSegment.querySelector(".clock").textContent}`, false);
  if (!audio) return;  // a transcript imported without its audio: the passage is shown, not played
  audio.currentTime = Math.max(0, Number(passage.dataset.start) - LEAD_IN);
  audio.play().catch(() => say("press play to listen", false));
}

// ---- keyboard

// A segment moved to from the keyboard takes the focus (it is focusable from the script only), so that a screen
// reader reads it and Tab goes on to its buttons.
function moveTo(segment) {
  playFrom(segment);
  segment.focus({ preventScroll: true });
}

// Single-key shortcuts can be turned off (WCAG 2.1.4): speech input types the letters of the words it hears. The
// choice is kept in this browser.
const shortcuts = document.getElementById("shortcuts");
shortcuts.checked = localStorage.getItem("ohp-shortcuts") !== "off";
shortcuts.addEventListener("change", () => localStorage.setItem("ohp-shortcuts", shortcuts.checked ? "on" : "off"));

document.addEventListener("keydown", (event) => {
  if (!shortcuts.checked) return;
  if (event.target.closest("input, textarea, select") || event.ctrlKey || event.metaKey || event.altKey) return;
  // Space and Enter press the button, link or summary that has the focus (the player's own controls too): taken
  // for play / pause, Space opened no Details and accepted no theme.
  if ((event.key === " " || event.key === "Enter") && event.target.closest("button, a, summary, audio")) return;
  const index = current ? segments.indexOf(current) : -1;
  const waiting = current && current.querySelector('.theme[data-status="suggested"]');
  if (event.key === " " && audio) { event.preventDefault(); if (audio.paused) audio.play(); else audio.pause(); }
  else if ((event.key === "j" || event.key === "ArrowDown") && index + 1 < segments.length) { event.preventDefault(); moveTo(segments[index + 1]); }
  else if ((event.key === "k" || event.key === "ArrowUp") && index > 0) { event.preventDefault(); moveTo(segments[index - 1]); }
  else if (event.key === "a" && waiting && canEdit) decide(waiting, "accepted");
  else if (event.key === "r" && waiting && canEdit) decide(waiting, "rejected");
  else if (event.key === "e" && current && canEdit) { event.preventDefault(); edit(current); }
  else if (event.key === "t" && current && canEdit) { event.preventDefault(); offerByKeyboard(current); }
  else if (event.key === "d") { event.preventDefault(); nextDoubtful(); }
});
