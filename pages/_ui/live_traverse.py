"""Live traversal sliders: a small Streamlit (components v2) widget that decodes in the
browser while a slider is dragged, and reports the code to Python on release.

Data in (from ``vae_core.explore.live_decode``): the current code, the shown dims with labels, the
image shape and either MLP decoder weights or precomputed frames. State out: ``z``, the
full latent code after the last release. The browser counts decoded frames in
``window.__leFrames`` and the time spent decoding in ``window.__leDecodeMs`` (and the last
image's mean grey level in ``window.__leLast``) so tests
and bench/ui_latency.py can measure updates per second and compare with the server.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from vae_core.explore.live_decode import live_payload

_JS = r"""
function bytes(b64) {
  const bin = atob(b64); const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
const f32 = (b64) => new Float32Array(bytes(b64).buffer);

// Decode z into the RGBA ImageData `img` (MLP weights) or copy a precomputed frame.
function decodeInto(st, row) {
  const { C, H, W, dec, img, z } = st;
  if (dec.kind === 'mlp') {
    const D = z.length, hid = dec.hidden, P = C * H * W, h = st.h;
    for (let j = 0; j < hid; j++) {           // h = relu(W1 z + b1)
      let s = st.b1[j]; const r = j * D;
      for (let d = 0; d < D; d++) s += st.w1[r + d] * z[d];
      h[j] = s > 0 ? s : 0;
    }
    for (let p = 0; p < P; p++) {             // mean = sigmoid(W2 h + b2), planes (C, H, W)
      let s = st.b2[p]; const r = p * hid;
      for (let j = 0; j < hid; j++) s += st.w2[r + j] * h[j];
      const v = 255 / (1 + Math.exp(-s));
      const c = Math.floor(p / (H * W)), pix = p % (H * W);
      if (C === 1) { img.data[4*pix] = img.data[4*pix+1] = img.data[4*pix+2] = v; } else img.data[4*pix + c] = v;
      img.data[4*pix + 3] = 255;
    }
  } else {
    const value = z[st.dims[row].dim], vals = dec.values;
    let k = 0, best = Infinity;               // nearest precomputed value
    for (let i = 0; i < vals.length; i++) { const e = Math.abs(vals[i] - value); if (e < best) { best = e; k = i; } }
    const off = (row * vals.length + k) * H * W * C;
    for (let pix = 0; pix < H * W; pix++) {
      for (let c = 0; c < 3; c++) img.data[4*pix + c] = st.frames[off + pix * C + (C === 1 ? 0 : c)];
      img.data[4*pix + 3] = 255;
    }
  }
}

export default function(component) {
  const { data, parentElement, setStateValue } = component;
  if (!data) return;
  const [C, H, W] = data.shape;
  const sig = data.token + '|' + data.dims.map((d) => d.dim).join(',');
  let root = parentElement.querySelector('.le-root');
  const fresh = !root || root.dataset.sig !== sig;
  if (fresh) {
    if (root) root.remove();
    root = document.createElement('div'); root.className = 'le-root'; root.dataset.sig = sig;
    root.innerHTML = '<canvas class="le-canvas"></canvas><div class="le-sliders"></div>';
    parentElement.appendChild(root);
  }
  const canvas = root.querySelector('canvas');
  canvas.width = W; canvas.height = H;
  canvas.style.width = data.px + 'px'; canvas.style.height = Math.round(data.px * H / W) + 'px';
  const ctx = canvas.getContext('2d');
  // A new snapshot (same base) swaps the decoder but keeps what the user has dialled in.
  const z = fresh || !root._st ? Float32Array.from(data.z) : root._st.z;
  const dec = data.decoder;
  const st = { C, H, W, dec, z, dims: data.dims, img: ctx.createImageData(W, H) };
  if (dec.kind === 'mlp') {
    Object.assign(st, { w1: f32(dec.w1), b1: f32(dec.b1), w2: f32(dec.w2), b2: f32(dec.b2), h: new Float32Array(dec.hidden) });
  } else {
    st.frames = bytes(dec.frames);
  }
  root._st = st;
  const render = (row) => {
    const t0 = performance.now();
    decodeInto(root._st, row);
    ctx.putImageData(root._st.img, 0, 0);
    window.__leFrames = (window.__leFrames || 0) + 1;
    window.__leDecodeMs = (window.__leDecodeMs || 0) + (performance.now() - t0);
    // What was drawn, for tests: mean grey level (0..255) and the code.
    let sum = 0; const px = root._st.img.data;
    for (let i = 0; i < px.length; i += 4) sum += (px[i] + px[i + 1] + px[i + 2]) / 3;
    window.__leLast = { mean: sum / (px.length / 4), z: Array.from(root._st.z) };
  };
  if (fresh) {
    const box = root.querySelector('.le-sliders');
    data.dims.forEach((dim, row) => {
      const wrap = document.createElement('label'); wrap.className = 'le-row';
      const name = document.createElement('span'); name.className = 'le-name'; name.textContent = dim.label;
      const input = document.createElement('input');
      input.type = 'range'; input.min = -3; input.max = 3; input.step = 0.05; input.value = z[dim.dim];
      input.setAttribute('aria-label', dim.label);
      const out = document.createElement('span'); out.className = 'le-val'; out.textContent = (+z[dim.dim]).toFixed(2);
      input.addEventListener('input', () => {   // fires continuously while dragging
        root._st.z[dim.dim] = parseFloat(input.value); out.textContent = root._st.z[dim.dim].toFixed(2);
        render(row);
      });
      input.addEventListener('change', () => setStateValue('z', { token: data.token, z: Array.from(root._st.z) }));  // release
      wrap.append(name, input, out); box.appendChild(wrap);
    });
  }
  render(0);
}
"""

_CSS = """
.le-root { display: flex; gap: 1.5rem; align-items: flex-start; flex-wrap: wrap; font-family: var(--st-font); }
.le-canvas { image-rendering: pixelated; border: 1px solid var(--st-border-color); border-radius: 4px; background: #000; }
.le-sliders { flex: 1; min-width: 260px; display: flex; flex-direction: column; gap: 0.2rem; }
.le-row { display: grid; grid-template-columns: 11rem 1fr 3.2rem; align-items: center; gap: 0.6rem; font-size: 0.85rem; }
.le-row input { width: 100%; accent-color: var(--st-primary-color); }
.le-val { font-variant-numeric: tabular-nums; text-align: right; }
"""

_component = st.components.v2.component("latent_explorer_live_traverse", js=_JS, css=_CSS)


def live_sliders(model, z: np.ndarray, dims: list[int], labels: list[str], token: str, px: int = 224,
                 key: str = "live-traverse") -> np.ndarray:
    """Draw the live sliders and image; returns the code after the last release (or ``z``).

    ``token`` identifies the base code and snapshot: when it changes, the sliders reset.
    """
    payload = {
        "z": [float(v) for v in z],
        "dims": [{"dim": int(d), "label": lab} for d, lab in zip(dims, labels)],
        "shape": list(model.input_spec.shape),
        "decoder": live_payload(model, z, dims),
        "px": px,
        "token": token,
    }
    result = _component(key=key, data=payload, default={"z": None}, on_z_change=lambda: None)
    value = getattr(result, "z", None)
    # A release reported for an older base (before a reset or a new base) is ignored.
    if isinstance(value, dict) and value.get("token") == token and len(value.get("z") or []) == len(z):
        return np.asarray(value["z"], dtype=np.float32)
    return np.asarray(z, dtype=np.float32)
