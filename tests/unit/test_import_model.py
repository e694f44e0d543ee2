"""import-model: a user's own VAE, checked against the protocol on real MNIST test images.

Every user model here is real code in a real module file, imported the way the CLI imports one.
"""
import io
import json
import math
import subprocess
import sys
import textwrap
import uuid
import zipfile
from pathlib import Path

import pytest
import torch

from vae_core.engine.external import ExternalModelError
from vae_core.runs import rundir as rd
from vae_core.runs.importer import import_model
from vae_core.runs.manager import RunManager

ROOT = Path(__file__).resolve().parents[2]

# A small, correct user VAE; the tests below break one part of it at a time.
GOOD = """
import torch
from torch import nn

class UserVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Linear(784, 6)
        self.out = nn.Linear(3, 784)
        self.log_sigma = nn.Parameter(torch.tensor(-1.0))

    def encode(self, x):
        h = self.features(x.flatten(1))
        return MU(h), LOGVAR(h)

    def decode(self, z):
        return OUTPUT(self.out(z)).view(-1, 1, 28, 28)

def load():
    return FACTORY_BODY
"""


def write_model(folder: Path, mu="h[:, :3]", logvar="h[:, 3:]", output="torch.tanh", factory="UserVAE()",
                extra="") -> str:
    """A module file in ``folder`` with one part of ``GOOD`` replaced; returns its factory spec."""
    name = f"user_vae_{uuid.uuid4().hex[:8]}"
    src = (GOOD.replace("MU(h)", mu).replace("LOGVAR(h)", logvar).replace("OUTPUT", output)
           .replace("FACTORY_BODY", factory)) + textwrap.dedent(extra)
    (folder / f"{name}.py").write_text(src)
    return f"{name}:load"


def user_module(tmp_path, factory):
    from vae_core.engine.external import load_factory

    return sys.modules[load_factory(factory, str(tmp_path)).__module__]


def do_import(tmp_path, factory, **kw):
    args = dict(factory=factory, dataset="mnist", name="mine", runs_root=tmp_path / "runs", likelihood="gaussian",
                value_range=(-1.0, 1.0), sigma=None, python_path=str(tmp_path))
    args.update(kw)
    return import_model(**args)


def refused(tmp_path, factory, part, *phrases, **kw):
    with pytest.raises(ExternalModelError) as e:
        do_import(tmp_path, factory, **kw)
    assert e.value.part == part, str(e.value)
    for phrase in phrases:
        assert phrase in str(e.value), str(e.value)
    assert not (tmp_path / "runs" / "mine").exists()  # a failed import leaves no run behind
    assert not [p for p in (tmp_path / "runs").glob(".import-*")] if (tmp_path / "runs").exists() else True
    return str(e.value)


def test_a_good_model_imports_and_loads_like_any_run(tmp_path):
    result = do_import(tmp_path, write_model(tmp_path))
    run = result.run_dir
    assert result.config.family == "external" and result.config.model.latent_dim == 3
    for f in (rd.CONFIG, rd.WEIGHTS, "external.json", "summary.safetensors", rd.METRICS, rd.STATUS):
        assert (run / f).exists(), f
    snap = rd.load_snapshot(run)
    assert snap.model.latent_dim == 3
    epoch = [r for r in rd.read_metrics(run) if r["kind"] == "epoch"][0]
    assert math.isfinite(epoch["test_elbo"]) and epoch["test_elbo"] == pytest.approx(result.test_elbo)
    assert rd.read_status(run).state == "finished"


def test_the_adapter_maps_ranges_and_uses_the_gaussian_density_in_the_models_range(tmp_path):
    snap = rd.load_snapshot(do_import(tmp_path, write_model(tmp_path)).run_dir)
    model = snap.model
    x = torch.rand(5, 1, 28, 28)
    z = torch.randn(5, 3)
    out = model.decode(z)
    mean = model.inner.decode(z)
    assert torch.allclose(out, mean)
    assert torch.allclose(model.decoder_mean(out), (mean + 1) / 2)  # [-1, 1] shown as [0, 1]
    sigma = model.inner.log_sigma.exp()
    expected = torch.distributions.Normal(mean, sigma).log_prob(2 * x - 1).flatten(1).sum(1)
    assert torch.allclose(model.log_likelihood(x, out), expected, atol=1e-3)
    post = model.encode(x)
    mu, logvar = model.inner.encode(2 * x - 1)
    assert torch.allclose(post.mu, mu) and torch.allclose(post.logvar, logvar)


def test_a_fixed_sigma_is_used_as_declared(tmp_path):
    snap = rd.load_snapshot(do_import(tmp_path, write_model(tmp_path), sigma=0.3).run_dir)
    x, z = torch.rand(2, 1, 28, 28), torch.randn(2, 3)
    mean = snap.model.inner.decode(z)
    expected = torch.distributions.Normal(mean, 0.3).log_prob(2 * x - 1).flatten(1).sum(1)
    assert torch.allclose(snap.model.log_likelihood(x, snap.model.decode(z)), expected, atol=1e-3)


def test_encode_may_return_a_normal_distribution(tmp_path):
    factory = write_model(tmp_path, mu="torch.distributions.Normal(h[:, :3], torch.exp(0.5 * h[:, 3:]))",
                          logvar="None")
    # encode returns (Normal, None): a tuple whose first item is a distribution is not a posterior
    refused(tmp_path, factory, "encode", "expected a tensor")
    src = Path(tmp_path / (factory.split(":")[0] + ".py")).read_text()
    (tmp_path / (factory.split(":")[0] + ".py")).write_text(src.replace("return torch.distributions.Normal(h[:, :3], "
                                                                        "torch.exp(0.5 * h[:, 3:])), None",
                                                                        "return torch.distributions.Normal(h[:, :3], "
                                                                        "torch.exp(0.5 * h[:, 3:]))"))
    name = factory.split(":")[0]
    sys.modules.pop(name, None)
    snap = rd.load_snapshot(do_import(tmp_path, factory).run_dir)
    x = torch.rand(4, 1, 28, 28)
    h = snap.model.inner.features((2 * x - 1).flatten(1))
    assert torch.allclose(snap.model.encode(x).logvar, h[:, 3:], atol=1e-5)


# --- the factory -----------------------------------------------------------------------------
def test_a_factory_that_raises(tmp_path):
    factory = write_model(tmp_path, factory="(_ for _ in ()).throw(ValueError('no checkpoint at /data/ckpt'))")
    refused(tmp_path, factory, "factory", "raised ValueError", "no checkpoint at /data/ckpt")


def test_a_missing_module(tmp_path):
    refused(tmp_path, "no_such_package.vae:load", "factory", "cannot import module 'no_such_package.vae'", "--path")


def test_a_missing_function_and_a_malformed_spec(tmp_path):
    factory = write_model(tmp_path)
    refused(tmp_path, factory.replace(":load", ":build"), "factory", "has no 'build'")
    refused(tmp_path, "mymodel.py", "factory", "package.module:function")


def test_a_factory_that_returns_no_module(tmp_path):
    refused(tmp_path, write_model(tmp_path, factory="{'weights': 1}"), "factory", "returned a dict",
            "torch.nn.Module")


def test_a_module_without_encode(tmp_path):
    factory = write_model(tmp_path, factory="nn.Linear(2, 2)")
    refused(tmp_path, factory, "encode", "has no encode() method")


# --- shapes, values, devices ---------------------------------------------------------------------
def test_encode_with_one_code_for_the_whole_batch(tmp_path):
    refused(tmp_path, write_model(tmp_path, mu="h[:1, :3]", logvar="h[:1, 3:]"), "encode",
            "one (mu, logvar) pair per image", "batch of 16", "(1, 3)")


def test_decode_with_the_wrong_shape(tmp_path):
    factory = write_model(tmp_path, output="torch.tanh")
    src_path = tmp_path / (factory.split(":")[0] + ".py")
    src_path.write_text(src_path.read_text().replace("view(-1, 1, 28, 28)", "view(-1, 784)"))
    refused(tmp_path, factory, "decode", "input's shape (16, 1, 28, 28)", "(16, 784)")


def test_nan_in_the_posterior(tmp_path):
    refused(tmp_path, write_model(tmp_path, logvar="h[:, 3:] * float('nan')"), "encode", "logvar contains NaN")


def test_a_model_that_computes_on_another_device(tmp_path):
    # A hard-coded device in forward: no GPU here, so the meta device stands for "another device".
    refused(tmp_path, write_model(tmp_path, mu="h[:, :3].to('meta')"), "encode", "mu is on meta",
            "device of its input")


def test_a_float64_model_is_converted_and_said_so(tmp_path):
    lines = []
    result = do_import(tmp_path, write_model(tmp_path, factory="UserVAE().double()"), say=lines.append)
    assert any("converted from float64 to float32" in line for line in lines)
    assert all(p.dtype == torch.float32 for p in rd.load_snapshot(result.run_dir).model.parameters())


def test_a_model_on_the_meta_device(tmp_path):
    refused(tmp_path, write_model(tmp_path, factory="UserVAE().to('meta')"), "weights", "meta device")


# --- the likelihood against the output range --------------------------------------------------
def test_bernoulli_declared_but_decode_returns_probabilities(tmp_path):
    refused(tmp_path, write_model(tmp_path, output="torch.sigmoid"), "likelihood", "looks like probabilities",
            "logits", likelihood="bernoulli", value_range=(0.0, 1.0))


def test_gaussian_outputs_outside_the_declared_range(tmp_path):
    factory = write_model(tmp_path, output="(lambda t: 50 * t)")
    refused(tmp_path, factory, "likelihood", "outside the declared value range [-1, 1]")


def test_learned_sigma_without_its_parameter(tmp_path):
    refused(tmp_path, write_model(tmp_path), "likelihood", "'noise_scale'", "does not have", "log_sigma",
            sigma_param="noise_scale")


def test_declared_input_shape_that_the_dataset_does_not_have(tmp_path):
    refused(tmp_path, write_model(tmp_path), "input shape", "(1, 28, 28)", "3,32,32", input_shape=(3, 32, 32))


# --- weights files ------------------------------------------------------------------------------
def test_weights_from_a_state_dict_pt_file_are_read_and_stored_as_safetensors(tmp_path):
    factory = write_model(tmp_path)
    module = user_module(tmp_path, factory)
    torch.manual_seed(1)
    trained = module.load()
    with torch.no_grad():
        trained.log_sigma.fill_(-2.5)
    torch.save({"state_dict": trained.state_dict(), "epoch": 7}, tmp_path / "ckpt.pt")
    snap = rd.load_snapshot(do_import(tmp_path, factory, weights=tmp_path / "ckpt.pt").run_dir)
    assert float(snap.model.inner.log_sigma.detach()) == pytest.approx(-2.5)
    assert torch.equal(snap.model.inner.features.weight, trained.features.weight)


def test_a_pickled_model_object_is_refused_not_unpickled(tmp_path):
    factory = write_model(tmp_path)
    module = user_module(tmp_path, factory)
    torch.save(module.load(), tmp_path / "model.pt")  # the whole object: needs a full unpickle
    refused(tmp_path, factory, "weights", "weights_only=True", "state_dict", weights=tmp_path / "model.pt")


def test_weights_that_do_not_match_the_module(tmp_path):
    from safetensors.torch import save_file

    factory = write_model(tmp_path)
    save_file({"features.weight": torch.zeros(6, 784), "encoder.bias": torch.zeros(6)}, str(tmp_path / "w.safetensors"))
    refused(tmp_path, factory, "weights", "missing", "features.bias", "unexpected encoder.bias",
            weights=tmp_path / "w.safetensors")


# --- security --------------------------------------------------------------------------------------
def _zip_of(run_dir: Path, files) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in files:
            z.writestr(f"{run_dir.name}/{f}", (run_dir / f).read_bytes())
    return buf.getvalue()


def test_an_uploaded_run_that_names_a_factory_is_refused(tmp_path):
    run = do_import(tmp_path, write_model(tmp_path)).run_dir
    manager = RunManager(tmp_path / "other-runs")
    for files in ((rd.CONFIG, rd.WEIGHTS), (rd.CONFIG, rd.WEIGHTS, "external.json")):
        with pytest.raises(rd.RunError, match="names a model factory, which is code"):
            manager.import_zip(_zip_of(run, files))
    with pytest.raises(rd.RunError, match="Uploads never import or run code"):
        manager.import_run("x", (run / rd.CONFIG).read_bytes(), (run / rd.WEIGHTS).read_bytes())
    assert manager.list_runs() == []


def test_a_run_whose_signature_was_not_made_here_is_not_loaded(tmp_path, monkeypatch):
    marker = tmp_path / "imported.txt"
    factory = write_model(tmp_path, extra=f"""
        open({str(marker)!r}, "a").write("x")
    """)
    run = do_import(tmp_path, factory).run_dir
    assert marker.read_text() == "x"  # the CLI's import ran the module once
    record = json.loads((run / "external.json").read_text())
    record["factory"] = "os:system"  # a forged factory under the old signature
    (run / "external.json").write_text(json.dumps(record))
    with pytest.raises(rd.RunError, match="not imported by this machine"):
        rd.load_snapshot(run)
    # A run from another machine: signed with another key.
    (run / "external.json").unlink()
    monkeypatch.setenv("LATENT_EXPLORER_KEY_FILE", str(tmp_path / "other.key"))
    sys.modules.pop(factory.split(":")[0], None)
    run2 = do_import(tmp_path, factory, name="mine2").run_dir
    monkeypatch.setenv("LATENT_EXPLORER_KEY_FILE", str(tmp_path / "this.key"))
    sys.modules.pop(factory.split(":")[0], None)
    with pytest.raises(rd.RunError, match="not imported by this machine"):
        rd.load_snapshot(run2)
    with pytest.raises(rd.RunError, match="without a valid external.json"):
        rd.load_snapshot(run)
    assert marker.read_text() == "xx"  # refused runs never imported the module again


def test_an_imported_run_is_not_trained(tmp_path):
    run = do_import(tmp_path, write_model(tmp_path)).run_dir
    manager = RunManager(tmp_path / "runs")
    with pytest.raises(rd.RunError, match="explores it but does not train it"):
        manager.resume(run.name)
    with pytest.raises(rd.RunError, match="explores it but does not train it"):
        manager.start(rd.read_config(run))


def test_the_cli_prints_one_line_and_no_traceback(tmp_path):
    factory = write_model(tmp_path, mu="h[:1, :3]", logvar="h[:1, 3:]")
    proc = subprocess.run([sys.executable, "-m", "vae_core", "import-model", "--factory", factory, "--dataset", "mnist",
                           "--likelihood", "gaussian", "--sigma", "0.2", "--value-range=-1,1", "--path", str(tmp_path),
                           "--runs-dir", str(tmp_path / "runs"), "--name", "bad"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "error: the model does not fit Latent Explorer's protocol: encode: must give one (mu, logvar) pair" in proc.stderr
    assert not (tmp_path / "runs" / "bad").exists()


def test_an_imported_2d_model_has_an_exact_posterior(tmp_path):
    from vae_core.labs.exact import exact_batch

    factory = write_model(tmp_path, mu="h[:, :2]", logvar="h[:, 3:5] - 2")
    src = tmp_path / (factory.split(":")[0] + ".py")
    src.write_text(src.read_text().replace("nn.Linear(3, 784)", "nn.Linear(2, 784)"))
    snap = rd.load_snapshot(do_import(tmp_path, factory, sigma=0.5).run_dir)
    x = torch.rand(3, 1, 28, 28)
    res = exact_batch(snap.model, x)
    assert res.converged and (res.elbo <= res.log_px).all()
    assert abs(res.elbo + res.kl_q_posterior - res.log_px).max() < 0.01
