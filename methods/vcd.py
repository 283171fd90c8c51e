"""VCD, Visual Contrastive Decoding (Leng et al., CVPR 2024), as a registered method: its hyper-parameters and
the strategy answering a batch. The mechanics (the noised branch, the contrast, the Python API) are in
`methods.engines.vcd`; `from methods.vcd import VCD` still works (imported on first use, so listing the
methods on the command line never loads torch).
"""
from __future__ import annotations

from methods.registry import Answer, Hyperparameter, Method, Strategy, register

DIFFUSION_STEPS = 1000  # the length of VCD's noise schedule (vcd_add_noise.py)

CD_ALPHA = Hyperparameter("cd_alpha", float, 1.0, "VCD contrast strength alpha: (1+a) l - a l' (0 = the model itself)",
                          source="Leng et al. 2024; VCD eval scripts --cd_alpha 1", low=0.0, short="a",
                          symbol="α")
CD_BETA = Hyperparameter("cd_beta", float, 0.1, "VCD plausibility constraint beta: keep tokens with p >= beta * max p "
                         "(0 keeps all)", source="Leng et al. 2024; VCD eval scripts --cd_beta 0.1 (the POPE "
                         "bash script uses 0.2)", low=0.0, high=1.0, short="b", symbol="β")
NOISE_STEP = Hyperparameter("noise_step", int, 500, "VCD diffusion step T of the noised image (0 = almost clean, "
                            "999 = almost pure noise)", source="Leng et al. 2024; VCD eval scripts "
                            "--noise_step 500", low=0, high=DIFFUSION_STEPS - 1, short="T", symbol="T")
CD_SEED = Hyperparameter("cd_seed", int, 55, "VCD seed of the image noise (and of sampling with --sample)",
                         source="VCD experiments/cd_scripts/*.bash (seed 55)", low=0, high=2 ** 32 - 1, short="s")
SAMPLE = Hyperparameter("sample", bool, False, "VCD: sample from softmax(z) with temperature 1, top-p 1 (the "
                        "paper's setting) instead of greedy decoding", source="VCD eval scripts (do_sample=True); "
                        "greedy by default here, as every other method", grid=False)


class VCDStrategy(Strategy):
    """Every VCD configuration of a batch: one generate each (both branches); configurations with the same
    noise step and seed share the noised pixel values."""

    name = "vcd"

    def answer(self, batch, configurations) -> dict:
        from methods.engines.vcd import VCD, noised_pixel_values  # torch: imported when a batch is answered

        noised: dict = {}
        answers: dict = {}
        for config in configurations:
            vcd = VCD.of(config.hyperparameters)
            key = (vcd.noise_step, vcd.seed)
            if key not in noised:
                noised[key] = noised_pixel_values(batch.vlm, batch.inputs, *key)
            results = vcd.run(batch.vlm, batch.inputs, batch.max_new_tokens, noised[key])
            answers[config] = [Answer(r.text, {"confidence": r.confidence, "head_size": r.head_size})
                               for r in results]
        return answers


def _smallest_intervention(values: dict) -> tuple:
    """Weaker contrast first: smaller alpha, then a stricter constraint (larger beta), then less noise."""
    return (values["cd_alpha"], -values["cd_beta"], values["noise_step"], values["cd_seed"], values["sample"])


VCD_METHOD = register(Method(
    name="vcd", title="+VCD", paper="Leng et al., CVPR 2024 (Visual Contrastive Decoding)",
    description="contrast the logits with those for a diffusion-noised image, (1+a) l - a l', under the "
                "plausibility constraint beta, at every decoding step",
    hyperparameters=(CD_ALPHA, CD_BETA, NOISE_STEP, CD_SEED, SAMPLE), strategy=VCDStrategy(),
    record_fields=("confidence", "head_size"), preference=_smallest_intervention, rank=30))


def __getattr__(name: str):
    # The Python API lives with the mechanics; importing it here would load torch with the registry.
    if name in ("VCD", "VCDAnswer", "VCDProcessor", "noise_schedule", "plausible", "vcd_scores",
                "noised_pixel_values"):
        from methods.engines import vcd as engine
        return getattr(engine, name)
    raise AttributeError(f"module 'methods.vcd' has no attribute {name!r}")
