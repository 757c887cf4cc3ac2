"""torch.ao FX int8 (what tinyasc uses) against torchao's PT2E flow on one model: convert time, run time,
agreement with the float model. Needs `pip install torchao==0.18.0` (no runtime requirements: torch
stays as it is); tinyasc itself does not depend on torchao. Results: docs/quantization.md.

    python benchmarks/quantization_pt2e.py
"""
import time, warnings
warnings.simplefilter("ignore")
import torch
from tinyasc.models import create_model, input_shape
from tinyasc.modelfile.int8 import prepare, calibrate, convert
from tinyasc.complexity.stored import stored_sizes
torch.manual_seed(0)
name = "dcase24_baseline"
m = create_model(name).eval()
shape = input_shape(name)
calib = [torch.randn(8, *shape[1:]) for _ in range(4)]
x = torch.randn(64, *shape[1:])
with torch.no_grad():
    ref = m(x)
# FX (today)
t = time.time(); p = prepare(m, "ptq", calib[0]); calibrate(p, calib); fx = convert(p); fx_t = time.time() - t
with torch.no_grad():
    fx_out = fx(x); t = time.perf_counter(); [fx(x) for _ in range(5)]; fx_run = (time.perf_counter() - t) / 5
# PT2E (torchao)
from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, convert_pt2e
import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
t = time.time()
exported = torch.export.export(m, (calib[0],), dynamic_shapes=({0: torch.export.Dim("b", min=2, max=1024)},)).module()
q = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
pp = prepare_pt2e(exported, q)
with torch.no_grad():
    for c in calib: pp(c)
pt = convert_pt2e(pp); pt_t = time.time() - t
with torch.no_grad():
    pt_out = pt(x); t = time.perf_counter(); [pt(x) for _ in range(5)]; pt_run = (time.perf_counter() - t) / 5
def dev(a): return float((a - ref).abs().max() / ref.abs().max())
agree = lambda a: float((a.argmax(1) == ref.argmax(1)).float().mean())
print(f"FX  : convert {fx_t:.1f}s, run {1000*fx_run:.0f} ms/64 clips, max|dev|/max|ref| {dev(fx_out):.3f}, top-1 agree {agree(fx_out):.2f}, bytes {stored_sizes(fx)['bytes']}")
print(f"PT2E: convert {pt_t:.1f}s, run {1000*pt_run:.0f} ms/64 clips (eager, reference Q/DQ), max|dev|/max|ref| {dev(pt_out):.3f}, top-1 agree {agree(pt_out):.2f}")
import torch._inductor.config as ic
ic.freezing = True
with torch.no_grad():
    t = time.time(); comp = torch.compile(pt); comp(x); ct = time.time() - t
    t = time.perf_counter(); [comp(x) for _ in range(5)]; crun = (time.perf_counter() - t) / 5
    print(f"PT2E + torch.compile (inductor, freezing): compile {ct:.0f}s, run {1000*crun:.0f} ms/64 clips, top-1 agree {agree(comp(x)):.2f}")
