import perceiver_calc as pc
from perceiver_calc.plan import compare, fit, plot_sweep, training_plan
from perceiver_calc.sweep import evaluate, grid
from perceiver_calc.workload import Workload

base = pc.load_config("docs/tutorial-base.json")
wl = Workload(batch_size=8, dtype="mixed-bf16", mode="training")
sweep = grid(
    base,
    {"d_latents": list(range(512, 1537, 256)), "num_latents": list(range(64, 513, 64))},
    workload=wl,
)
result = evaluate(sweep)  # 40 configs, exact, vectorised
print(len(result), int(result.valid.sum()), result.scalar_rows)

found = fit(result, max_memory=8 * 10**9)  # <= 8 GB per GPU; Pareto: params vs FLOPs
for i in found.pareto[:4]:
    print(
        sweep.row(i), f"{result.counts['params'][i]:,}", f"{result.counts['training_flops'][i]:.3e}"
    )
plot_sweep(result, "docs/figures/fit.png", highlight=found.pareto)

best = found.pareto[-1]
chosen = pc.resolve(base.model_copy(update=sweep.row(best)))
cmp = compare([pc.resolve(base), chosen], ["base", "chosen"], wl)
print(cmp.differing_dims[:4], cmp.differing_counts)

plan = training_plan(chosen, wl, gpus=8, device="h100-sxm", mfu=0.4, samples=100_000_000)
for m in plan.memory:
    print(m.strategy, m.checkpointing, f"{m.total_bytes / 2**30:.2f} GiB")
print(f"{plan.step_seconds * 1e3:.1f} ms/step, {plan.train_seconds / 3600:.1f} h")
