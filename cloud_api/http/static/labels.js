// Label print (managers, §4.3 bodies filled from the LOT or serial) and reprint with reason (operators and up).
PAGES.labels = {
  async render(arg) {
    const [type, subject] = arg && arg.includes(":") ? arg.split(/:(.*)/s) : ["LOT", ""];
    const box = $("page-labels");
    box.innerHTML = `<div class="grid2"><div><h2>${esc(t("labelPrint"))}</h2>
        <form id="printForm" ${canManage() ? "" : "hidden"}>
          <label>${esc(t("labelType"))}</label><select name="label_type" id="printType"><option>LOT</option><option>SERIAL</option></select>
          <label>${esc(t("lot"))} / ${esc(t("serial"))}</label><input name="subject" id="printSubject" size="28" required value="${esc(subject)}">
          <label>${esc(t("printer"))}</label><select name="printer_id" id="printPrinter"></select>
          <br><br><button type="submit">${esc(t("print"))}</button></form></div>
      <div><h2>${esc(t("labelReprint"))}</h2><form id="reprintForm" ${canOperate() ? "" : "hidden"}>
          <label>${esc(t("labelType"))}</label><select name="label_type" id="reprintType"><option>SERIAL</option><option>LOT</option></select>
          <label>${esc(t("lot"))} / ${esc(t("serial"))}</label><input name="subject" id="reprintSubject" size="28" required value="${esc(subject)}">
          <label>${esc(t("reason"))}</label><input name="reason" required maxlength="500">
          <label>${esc(t("workerId"))}</label><input name="worker_id" required maxlength="50">
          <label>${esc(t("printer"))}</label><select name="printer_id" id="reprintPrinter"></select>
          <br><br><button type="submit">${esc(t("reprint"))}</button></form></div></div>
      <h3>${esc(t("labelHistory"))}</h3><div id="labelHistory" class="muted"></div>`;
    $("printType").value = type; $("reprintType").value = type === "LOT" ? "LOT" : "SERIAL";
    const printers = await api("/api/v1/printers?active=true");
    const options = printers.status === 200 ? printers.body.data.map(p => `<option value="${esc(p.printer_id)}">${esc(p.printer_id)} (${esc(p.station_id || p.station || "")})</option>`).join("") : "";
    $("printPrinter").innerHTML = options;
    $("reprintPrinter").innerHTML = `<option value="">${esc(t("default"))}</option>${options}`;
    $("printForm").onsubmit = e => { e.preventDefault(); this.print(new FormData(e.target)); };
    $("reprintForm").onsubmit = e => { e.preventDefault(); this.reprint(new FormData(e.target)); };
    if (subject) this.history(type, subject);
  },
  async print(form) {
    const type = form.get("label_type"), subject = form.get("subject").trim();
    // The §4.3 body wants the label's fields: read them from the LOT or the serial first.
    const found = await api(type === "LOT" ? `/api/v1/lots/${encodeURIComponent(subject)}` : `/api/v1/serials/${encodeURIComponent(subject)}`);
    if (found.status !== 200) { setMessage(found.body.message, true); return; }
    const d = found.body.data;
    const body = type === "LOT"
      ? {label_type: "LOT", lot_number: d.lot_number, product_model: d.product_model, target_quantity: d.target_quantity, created_date: d.production_date, printer_id: form.get("printer_id")}
      : {label_type: "SERIAL", serial_number: d.serial_number, lot_number: d.lot_number, product_model: d.product_model, created_date: String(d.created_at).slice(0, 10), printer_id: form.get("printer_id")};
    const answer = await api("/api/v1/label/print", {method: "POST", body: JSON.stringify(body)});
    setMessage(answer.body.message + (answer.body.error_code ? ` (${answer.body.error_code})` : ""), answer.status !== 200);
    this.history(type, subject);
  },
  async reprint(form) {
    const type = form.get("label_type"), subject = form.get("subject").trim();
    const body = {reason: form.get("reason"), worker_id: form.get("worker_id")};
    body[type === "LOT" ? "lot_number" : "serial_number"] = subject;
    if (form.get("printer_id")) body.printer_id = form.get("printer_id");
    const answer = await api("/api/v1/label/reprint", {method: "POST", body: JSON.stringify(body)});
    setMessage(answer.body.message + (answer.body.error_code ? ` (${answer.body.error_code})` : ""), answer.status !== 200);
    this.history(type, subject);
  },
  async history(type, subject) {
    const key = type === "LOT" ? "lot_number" : "serial_number";
    const {status, body} = await api(`/api/v1/label/history?${key}=${encodeURIComponent(subject)}`);
    if (status !== 200 || !$("labelHistory")) return;
    $("labelHistory").innerHTML = table([t("labelType"), t("serial"), t("printer"), t("reprint"), t("reason"), t("status"), t("requested")],
      body.data.map(l => `<tr><td>${esc(l.label_type)}</td><td>${esc(l.serial_number || l.label_key || "")}</td><td>${esc(l.printer_id)}</td>
        <td>${l.reprint ? "✓" : ""}</td><td>${esc(l.reason || "")}</td><td>${esc(l.status)}</td><td>${time(l.requested_at || l.created_at)}</td></tr>`));
  },
};
