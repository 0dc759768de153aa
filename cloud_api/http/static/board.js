// Today's board: counts, yields, LOTs in progress. Redrawn on live events (no polling).
PAGES.board = {
  shift: "",
  async render() {
    const box = $("page-board");
    if (!box.dataset.ready) {
      box.innerHTML = `<h2><span data-i18n="boardTitle">${esc(t("boardTitle"))}</span> <span id="boardDay" class="muted"></span></h2>
        <form class="inline" id="boardShift"><label>${esc(t("shift"))}</label>
          <select id="shiftSelect"><option value="">${esc(t("shiftAll"))}</option><option value="D">D</option><option value="N">N</option></select></form>
        <div id="boardBody"></div>`;
      box.dataset.ready = lang;
      $("shiftSelect").onchange = e => { this.shift = e.target.value; this.load(); };
    }
    if (box.dataset.ready !== lang) { box.dataset.ready = ""; box.innerHTML = ""; return this.render(); }
    $("shiftSelect").value = this.shift;
    await this.load();
  },
  async load() {
    const query = this.shift ? `?shift=${this.shift}` : "";
    const {status, body} = await api(`/api/v1/dashboard/today${query}`);
    if (status !== 200) { setMessage(body.message, true); return; }
    const d = body.data, totals = d.totals;
    $("boardDay").textContent = `${t("productionDay")} ${d.production_date}${d.shift ? " · " + d.shift : ""} · ${t("updated")} ${time(d.generated_at).slice(11)}`;
    const card = (key, value, id) => `<div class="card"><div class="value" id="${id}">${esc(value)}</div><div class="name">${esc(t(key))}</div></div>`;
    const cards = [
      card("lotsCreated", totals.lots_created, "cardLots"), card("started", totals.started, "cardStarted"),
      card("completed", totals.completed, "cardCompleted"), card("passed", totals.passed, "cardPassed"),
      card("failed", totals.failed, "cardFailed"), card("inProgress", totals.in_progress, "cardInProgress"),
      card("fpy", pct(d.first_pass_yield), "cardFpy"), card("unitsDone", d.units.completed, "cardUnits"),
      card("unitsPerHour", d.units.per_hour, "cardUph"),
    ].join("");
    const processes = d.processes.map(p => `<tr><td>${p.sequence}. ${esc(p.process_name)}</td><td class="num">${p.started}</td>
      <td class="num">${p.completed}</td><td class="num PASS">${p.passed}</td><td class="num ${p.failed ? "FAIL" : ""}">${p.failed}</td>
      <td class="num">${p.in_progress}</td><td class="num">${pct(p.first_pass_yield)}</td></tr>`);
    const lots = d.lots_in_progress.map(l => `<tr class="link" data-lot="${esc(l.lot_number)}"><td>${esc(l.lot_number)}</td>
      <td class="${esc(l.status)}">${esc(l.status)}</td><td>${esc(l.shift)}</td>
      <td>${esc(l.current_process_name || "—")} <span class="muted">${l.current_process ? esc(l.current_state === "STARTED" ? t("running") : t("waiting")) : ""}</span></td>
      <td>${bar(l.percent)} (${l.completed_processes}/${l.total_processes})</td><td class="num">${l.serials}</td>
      <td class="num ${l.failed_results ? "FAIL" : ""}">${l.failed_results}</td></tr>`);
    $("boardBody").innerHTML = `<div class="cards">${cards}</div>
      <h3>${esc(t("perProcess"))}</h3>${table([t("process"), {label: t("started"), num: 1}, {label: t("completed"), num: 1},
        {label: t("passed"), num: 1}, {label: t("failed"), num: 1}, {label: t("inProgress"), num: 1}, {label: t("fpy"), num: 1}], processes)}
      <h3>${esc(t("lotsInProgress"))}</h3><div id="boardLots">${table([t("lot"), t("status"), t("shift"), t("current"), t("progress"),
        {label: t("serials"), num: 1}, {label: t("failed"), num: 1}], lots, t("noLots"))}</div>`;
    document.querySelectorAll("#boardLots tr.link").forEach(row => row.onclick = () => { location.hash = `lot/${row.dataset.lot}`; });
  },
  onLive() { this.load(); },
};
