// Serial trace page: the unit's LOT, every process with results and measurements, components, firmware, labels.
PAGES.serial = {
  number: null,
  async render(number) {
    this.number = number || null;
    const box = $("page-serial");
    box.innerHTML = `<h2>${esc(t("serialTrace"))}</h2><form class="inline" id="findSerial">
      <input id="serialInput" placeholder="WF-KR-251110D-001-0001" size="28" value="${esc(number || "")}">
      <button type="submit">${esc(t("find"))}</button></form><div id="serialBody"></div>`;
    $("findSerial").onsubmit = e => { e.preventDefault(); const v = $("serialInput").value.trim(); if (v) location.hash = `serial/${v}`; };
    if (!number) return;
    const {status, body} = await api(`/api/v1/trace/serials/${encodeURIComponent(number)}`);
    if (status !== 200) { $("serialBody").innerHTML = `<p class="error">${esc(body.message)}</p>`; return; }
    const d = body.data, serial = d.serial, lot = d.lot;
    const history = d.status_history.map(h => `<tr><td>${esc(h.from_status)} → <span class="${esc(h.to_status)}">${esc(h.to_status)}</span></td>
      <td>${esc(h.process_id || "")}</td><td>${esc(h.cause)}</td><td>${time(h.changed_at)}</td></tr>`);
    $("serialBody").innerHTML = `<h2 id="serialTitle">${esc(serial.serial_number)} — <span class="${esc(serial.status)}">${esc(serial.status)}</span></h2>
      <dl class="facts"><dt>${esc(t("lot"))}</dt><dd><a href="#lot/${esc(lot.lot_number)}">${esc(lot.lot_number)}</a> (${esc(lot.status)})</dd>
        <dt>${esc(t("model"))}</dt><dd>${esc(lot.product_model)}</dd><dt>#</dt><dd>${serial.sequence}</dd>
        <dt>${esc(t("created"))}</dt><dd>${time(serial.created_at)}</dd>
        <dt>${esc(t("firmware"))}</dt><dd>${d.firmware ? esc(`${d.firmware.version} (md5 ${d.firmware.md5_hash || "?"})`) : "—"}</dd></dl>
      <p><button class="secondary" id="dhr">${esc(t("dhr"))}</button>
        ${canOperate() ? `<button class="secondary" id="reprintSerial">${esc(t("reprint"))}</button>` : ""}</p>
      <h3>${esc(t("process"))}</h3><div id="serialProcesses">${processTable(d.processes)}</div>
      <div class="grid2"><div><h3>${esc(t("components"))}</h3>${table([t("process"), t("kind"), t("componentLot")], d.component_lots.map(c =>
        `<tr><td>${esc(c.process_id)}</td><td>${esc(c.component_kind)}</td><td><a href="#recall/${esc(c.component_kind)}:${esc(c.component_lot)}">${esc(c.component_lot)}</a></td></tr>`))}</div>
      <div><h3>${esc(t("history"))}</h3>${table([t("status"), t("process"), t("cause"), t("time")], history)}</div></div>
      <h3>${esc(t("labels"))}</h3>${labelTable(d.labels)}`;
    $("dhr").onclick = () => download(`/api/v1/trace/serials/${encodeURIComponent(serial.serial_number)}/dhr.pdf?lang=${lang}`, `DHR-${serial.serial_number}.pdf`, true);
    if ($("reprintSerial")) $("reprintSerial").onclick = () => { location.hash = `labels/SERIAL:${serial.serial_number}`; };
  },
  onLive(events) {
    const lot = this.number && this.number.replace(/-\d{4}$/, "");
    if (lot && mentions(events, lot)) this.render(this.number);
  },
};
