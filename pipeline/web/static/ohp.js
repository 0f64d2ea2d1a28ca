// Shared by the pages: JSON API calls carrying the session's CSRF token, and a status line.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;

async function api(method, url, body) {
  const response = await fetch(url, {
    method,
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({ detail: response.statusText }));
  return { ok: response.ok, status: response.status, data };
}

function say(text, isError) {
  const line = document.getElementById("message");
  if (!line) return;
  line.textContent = text;  // never innerHTML: messages may quote transcript text
  line.classList.toggle("error", Boolean(isError));
}
