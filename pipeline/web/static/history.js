"use strict";

document.querySelectorAll("button.revert").forEach((button) => {
  button.addEventListener("click", async () => {
    const result = await api("POST", `/api/history/${button.dataset.id}/revert`);
    if (result.ok) location.reload();
    else say(result.data.detail, true);
  });
});
