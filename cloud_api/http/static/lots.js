// LOT list with creation, and the LOT trace page (all 8 processes, results, serials, components, labels, close).
PAGES.lots = {
  async render() {
    const box = $("page-lots");
    box.innerHTML = `<div class="grid2"><div>
        <h2>${esc(t("create"))}</h2>
        <form id="createLot" ${canManage() ? "" : "hidden"}>
          <label>${esc(t("model"))}</label><select name="product_model" id="models"></select>
          <label>${esc(t("quantity"))}</label><input name="target_quantity" type="number" min="1" max="9999" value="100">
          <label>${esc(t("shift"))}</label><select name="shift"><option value="D">D</option><option value="N">N</option></select>
          <br><br><button type="submit">${esc(t("createButton"))}</button></form></div>
      <div><h2>${esc(t("lotTrace"))}</h2><form class="inline" id="findLot"><input id="lotInput" placeholder="WF-KR-251110D-001" size="24">
        <button type="submit">${esc(t("find"))}</button></form></div></div>
      <h2 style="margin-top:16px">${esc(t("lots"))}</h2><div id="lotList"></div>`;
    $("findLot").onsubmit = e => { e.preventDefault(); const v = $("lotInput").value.trim(); if (v) location.hash = `lot/${v}`; };
    $("createLot").onsubmit = async event => {
      event.preventDefault();
      const form = new FormData(event.target);
      const {status, body} = await api("/api/v1/lots", {method: "POST", body: JSON.stringify({
        product_model: form.get("product_model"), target_quantity: Number(form.get("target_quantity")), shift: form.get("shift")})});
      setMessage(status === 201 ? `${body.message}: ${body.data.lot_number}` : `${body.message} (${body.error_code})`, status !== 201);
      if (status === 201) this.list();
    };
    const models = await api("/api/v1/product-models");
    if (models.status === 200) $("models").innerHTML = models.body.data.map(m => `<option value="${esc(m.model_code)}">${esc(m.model_name)} (${esc(m.model_code)})</option>`).join("");
    await this.list();
  },
  async list() {
    const {status, body} = await api("/api/v1/lots?limit=50");
    if (status !== 200 || !$("lotList")) return;
    const rows = body.data.map(l => {
      const percent = Math.round(100 * l.completed_processes / l.total_processes);
      return `<tr class="link" data-lot="${esc(l.lot_number)}"><td>${esc(l.lot_number)}</td><td class="${esc(l.status)}">${esc(l.status)}</td>
        <td>${esc(l.shift)}</td><td class="num">${l.target_quantity}</td><td>${bar(percent)}</td><td>${time(l.created_at)}</td></tr>`;
    });
    $("lotList").innerHTML = table([t("lot"), t("status"), t("shift"), {label: t("quantity"), num: 1}, t("progress"), t("created")], rows);
    document.querySelectorAll("#lotList tr.link").forEach(row => row.onclick = () => { location.hash = `lot/${row.dataset.lot}`; });
  },
  onLive(events) { if (events.some(e => ["lot", "run", "reset"].includes(e.kind))) this.list(); },
};

function resultRows(process) {
  // One sub-row per completion record: verdict, cause, station, worker, measurements out of limits highlighted.
  return (process.results || []).map(r => {
    const measured = (r.measurements || []).map(m => `<span class="${m.out_of_limits ? "out" : ""}">${esc(m.test_point_id ? m.test_point_id + " " : "")}${esc(m.characteristic)}
      = ${esc(m.value)}${esc(m.unit || "")} [${esc(m.lower_limit ?? "")}–${esc(m.upper_limit ?? "")}] ${esc(m.result || "")}</span>`).join("<br>");
    const parts = (r.component_lots || []).map(c => `${esc(c.component_kind)}: ${esc(c.component_lot)}`).join(", ");
    const firmware = r.firmware ? `${esc(t("firmware"))} ${esc(r.firmware.version)} md5 ${esc(r.firmware.md5_hash || "")}` : "";
    return `<tr class="sub"><td></td><td colspan="2">${esc(r.level)} ${esc(r.serial_number || "")} <span class="${esc(r.result)}">${esc(r.result)}</span></td>
      <td>${esc(r.station)}</td><td>${esc(r.worker_id)}</td><td>${time(r.complete_time)}</td>
      <td colspan="3">${r.failure_reasons.length ? `<span class="FAIL">${esc(r.failure_reasons.join("; "))}</span><br>` : ""}${measured}
      ${parts ? "<br>" + parts : ""}${firmware ? "<br>" + firmware : ""}
      <details><summary class="muted">${esc(t("processData"))}</summary><pre>${esc(JSON.stringify(r.process_data, null, 1))}</pre></details></td></tr>`;
  });
}
function processTable(processes) {
  const rows = processes.flatMap(p => [`<tr><td>${p.sequence}</td><td>${esc(p.process_name)}</td><td class="${esc(p.status)}">${esc(p.status)}</td>
    <td>${esc(p.start_station || "")}</td><td>${esc(p.start_worker_id || "")}</td><td>${time(p.start_time)}</td>
    <td>${esc(p.work_order_id || "")}</td><td>${esc(p.complete_worker_id || "")} ${time(p.complete_time)}</td>
    <td class="${esc(p.serial_result || p.result || "")}">${esc(p.serial_result || p.result || "")}</td></tr>`, ...resultRows(p)]);
  return table(["#", t("process"), t("status"), t("station"), t("startWorker"), t("start"), t("workOrder"), t("complete"), t("result")], rows);
}
function labelTable(labels) {
  return table([t("labelType"), t("serial"), t("printer"), t("reprint"), t("reason"), t("status"), t("requested")],
    (labels || []).map(l => `<tr><td>${esc(l.label_type)}</td><td>${esc(l.serial_number || "")}</td><td>${esc(l.printer_id)}</td>
      <td>${l.reprint ? "✓" : ""}</td><td>${esc(l.reason || "")}</td><td>${esc(l.status)}</td><td>${time(l.requested_at)}</td></tr>`));
}

PAGES.lot = {
  number: null,
  async render(number) {
    this.number = number;
    const box = $("page-lot");
    const {status, body} = await api(`/api/v1/trace/lots/${encodeURIComponent(number)}`);
    if (status !== 200) { box.innerHTML = `<h2>${esc(number)}</h2><p class="error">${esc(body.message)}</p>`; return; }
    const d = body.data, lot = d.lot;
    const serials = d.serials.map(s => `<tr class="link" data-serial="${esc(s.serial_number)}"><td>${esc(s.serial_number)}</td>
      <td class="${esc(s.status)}">${esc(s.status)}</td><td>${esc(s.failed_process || "")}</td></tr>`);
    const closable = canManage() && lot.status !== "CLOSED";
    box.innerHTML = `<h2 id="lotTitle">${esc(lot.lot_number)} — <span class="${esc(lot.status)}">${esc(lot.status)}</span></h2>
      <dl class="facts"><dt>${esc(t("model"))}</dt><dd>${esc(lot.product_model)} (${esc(lot.model_code)})</dd>
        <dt>${esc(t("quantity"))}</dt><dd>${lot.target_quantity}</dd><dt>${esc(t("shift"))}</dt><dd>${esc(lot.shift)} · ${esc(lot.production_date)}</dd>
        <dt>${esc(t("created"))}</dt><dd>${time(lot.created_at)} · ${esc(lot.created_by)}</dd>
        <dt>${esc(t("firmware"))}</dt><dd>${d.firmware ? esc(`${d.firmware.version} (md5 ${d.firmware.md5_hash || "?"})`) : "—"}</dd></dl>
      <p>${closable ? `<input id="closeReason" placeholder="${esc(t("closeReason"))}"> <button class="danger" id="closeLot">${esc(t("close"))}</button>` : ""}
        ${canManage() ? `<button class="secondary" id="printLot">${esc(t("printLabel"))}</button>` : ""}</p>
      <h3>${esc(t("process"))}</h3>${processTable(d.processes)}
      <div class="grid2"><div><h3>${esc(t("serials"))} (${d.serials.length})</h3><div id="lotSerials">${table([t("serial"), t("status"), t("failed")], serials)}</div></div>
      <div><h3>${esc(t("components"))}</h3>${table([t("process"), t("kind"), t("componentLot")], d.component_lots.map(c =>
        `<tr><td>${esc(c.process_id)}</td><td>${esc(c.component_kind)}</td><td><a href="#recall/${esc(c.component_kind)}:${esc(c.component_lot)}">${esc(c.component_lot)}</a></td></tr>`))}
      <h3>${esc(t("history"))}</h3>${table([t("status"), t("time"), t("by"), t("reason")], d.status_history.map(h =>
        `<tr><td>${esc(h.from_status || "")} → ${esc(h.to_status)}</td><td>${time(h.changed_at)}</td><td>${esc(h.actor)}</td><td>${esc(h.reason || "")}</td></tr>`))}</div></div>
      <h3>${esc(t("labels"))}</h3>${labelTable(d.labels)}`;
    document.querySelectorAll("#lotSerials tr.link").forEach(row => row.onclick = () => { location.hash = `serial/${row.dataset.serial}`; });
    if ($("printLot")) $("printLot").onclick = () => { location.hash = `labels/LOT:${lot.lot_number}`; };
    if ($("closeLot")) $("closeLot").onclick = async () => {
      if (!confirm(t("confirmClose"))) return;
      const reason = $("closeReason").value.trim();
      const answer = await api(`/api/v1/lots/${encodeURIComponent(lot.lot_number)}/close`, {method: "POST", body: JSON.stringify(reason ? {reason} : {})});
      setMessage(answer.body.message + (answer.body.error_code ? ` (${answer.body.error_code})` : ""), answer.status !== 200);
      if (answer.status === 200) this.render(lot.lot_number);
    };
  },
  onLive(events) { if (this.number && mentions(events, this.number)) this.render(this.number); },
};
