#include "commands.h"
#include "capsnet/runtime/process.h"

#include "capsnet/data/registry.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/registry/models.h"
#include "capsnet/recipes/run.h"
#include "capsnet/runtime/runtime.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <vector>

namespace capsnet::cli {

namespace {

// --model: a name in the model registry, each listed with its description.
std::string model_help() {
  std::string help = "the network, one of the registered models:";
  for (const auto& model : registered_models()) help += " '" + model.name + "': " + model.description + ".";
  return help;
}

CLI::Validator registered_model() {
  return CLI::Validator(
      [](std::string& name) {
        try {
          model_info(name);
          return std::string();
        } catch (const std::invalid_argument& e) {
          return std::string(e.what());
        }
      },
      "MODEL");
}

/// Command-line values land in `given`; after parsing, only the options the
/// user actually gave are copied onto the chosen preset.
struct Flags {
  TrainOptions given;
  std::string model_config; ///< --model-config, JSON
  std::vector<std::pair<CLI::Option*, std::function<void(TrainOptions&)>>> bound;

  /// Copies the field into the chosen options when `option` was given.
  template <typename Field>
  CLI::Option* bind(CLI::Option* option, Field field) {
    bound.emplace_back(option, [this, field](TrainOptions& o) { field(o) = field(given); });
    return option;
  }
  template <typename T, typename Field>
  CLI::Option* add(CLI::App* cmd, const std::string& name, Field field, const std::string& help) {
    T& storage = field(given);
    return bind(cmd->add_option(name, storage, help)->capture_default_str(), field);
  }
  /// A flag (no value) setting a bool field.
  template <typename Field>
  CLI::Option* add_flag(CLI::App* cmd, const std::string& name, Field field,
                        const std::string& help) {
    return bind(cmd->add_flag(name, field(given), help), field);
  }
  template <typename E, typename Field>
  CLI::Option* add_enum(CLI::App* cmd, const std::string& name, Field field,
                        const std::string& help) {
    return bind(add_enum_option(cmd, name, field(given), help), field);
  }
};

#define FIELD(type, member) [](TrainOptions& o) -> type& { return o.member; }

// The network and how it computes.
void add_model_options(CLI::App* cmd, Flags& f) {
  f.add<int64_t>(cmd, "--routing-iters", FIELD(int64_t, model.routing_iterations),
                 "routing iterations r of Procedure 1");
  f.add_enum<RoutingSoftmax>(cmd, "--routing-softmax", FIELD(RoutingSoftmax, model.routing_softmax),
                             "softmax of the routing logits over 'parents' (Procedure 1) or "
                             "'children' (the seed)");
  f.add<std::string>(cmd, "--model", FIELD(std::string, model_name), model_help())
      ->check(registered_model());
  f.bind(add_routing_option(cmd, f.given.routing), FIELD(RoutingImpl, routing));
  f.bind(add_precision_option(cmd, f.given.precision), FIELD(Precision, precision));
  f.add_enum<ConvAlgo>(cmd, "--conv", FIELD(ConvAlgo, conv),
                       "how capsnet's convolutions run in fp32 on the CPU: auto (the primary "
                       "capsules by winograd in training and oneDNN's forward in inference, "
                       "im2col + sgemm for conv1), mixed (oneDNN forward, im2col + sgemm "
                       "backward), im2col (im2col + BLAS sgemm both ways), onednn "
                       "(LibTorch's own both ways) or winograd (the primary capsules by "
                       "Winograd's F(2x2, 5x5) on the phases of the stride-2 convolution; "
                       "docs/performance.md, \"Choosing the convolution\"); "
                       "may change on --resume");
  f.bind(add_device_option(cmd, f.given.device), FIELD(std::string, device));
}

// The options of the training objective and the data the network sees.
void add_objective_options(CLI::App* cmd, Flags& f) {
  f.add<int64_t>(cmd, "--shift", FIELD(int64_t, shift),
                 "random translation of training images, up to N pixels each way (0: off)");
  f.add_flag(cmd, "--digit-augment", FIELD(bool, digit_augment),
             "Efficient-CapsNet's augmentation of training digits: random rotation, shift "
             "within the margins, squish and a 4x4 erased patch (its preset's default)");
  f.add<double>(cmd, "--recon-weight", FIELD(double, recon_weight),
                "weight of the reconstruction loss; 0 trains without reconstruction (Table 1)");
  f.add_enum<ReconstructionLoss>(cmd, "--recon-loss", FIELD(ReconstructionLoss, recon_loss),
                                 "sse: squared error summed per image (paper); mse: mean over "
                                 "pixels (seed)");
  f.add_enum<DecoderMask>(cmd, "--mask", FIELD(DecoderMask, mask),
                          "decoder mask in training: true 'label' (paper) or 'prediction' "
                          "(seed)");
  f.add<bool>(cmd, "--normalize", FIELD(bool, normalize),
              "standardise inputs with MNIST's mean and std (seed) instead of [0, 1] pixels");
  f.add<bool>(cmd, "--margin-squared", FIELD(bool, margin.squared),
              "square the hinge terms of the margin loss (Eq. 4; seed: false)");
  f.add<double>(cmd, "--m-plus", FIELD(double, margin.m_plus), "margin loss m+");
  f.add<double>(cmd, "--m-minus", FIELD(double, margin.m_minus), "margin loss m-");
  f.add<double>(cmd, "--margin-lambda", FIELD(double, margin.lambda),
                "down-weighting of absent classes in the margin loss");
}

// The network's shape and start, and --model-config, which edits the chosen
// model's configuration after the flags.
void add_architecture_options(CLI::App* cmd, Flags& f) {
  f.add<int64_t>(cmd, "--primary-types", FIELD(int64_t, model.primary_types),
                 "primary capsule types (channels of 8D capsules; the paper: 32 for MNIST, 64 "
                 "for CIFAR-10)");
  f.add<double>(cmd, "--w-init-std", FIELD(double, model.w_init_std),
                "standard deviation of the normal init of W_ij (seed: 1)");
  f.add<bool>(cmd, "--calibrate-init", FIELD(bool, calibrate_init),
              "before the first step, measure how far an Adam step moves the class capsules "
              "on the first batch and, where it would saturate them in a few steps (pictures "
              "on coloured backgrounds), scale the routing's input down (recorded as "
              "model.routing_input_scale; MNIST is untouched); seed: false");
  f.add<int64_t>(cmd, "--precise-bn-images", FIELD(int64_t, precise_bn_images),
                 "after every epoch, recompute batch norms' running statistics over N training "
                 "pictures (the test-time preparation), so that they are right after a short run "
                 "on few pictures (0: keep the momentum average; models without batch norm "
                 "ignore it)");
  f.add<bool>(cmd, "--digit-bias", FIELD(bool, model.digit_bias),
              "learned bias on s_j before squash, as in the authors' code");
  // After --model and the flags above: it edits the chosen model's configuration.
  auto* config = cmd->add_option("--model-config", f.model_config,
                                 "fields of the model's own configuration as a JSON object, "
                                 "merged over the preset's and the flags' (e.g. "
                                 "'{\"routing_iterations\": 1}'; a model registered by your "
                                 "program takes its own fields; docs/architecture.md, \"Adding a model\")");
  f.bound.emplace_back(config, [&f](TrainOptions& o) {
    o = with_model_config(o, parse_model_config(f.model_config));
  });
}

// What the run trains on, for how long, and how it computes.
void add_run_options(CLI::App* cmd, Flags& f) {
  f.bind(add_data_option(cmd, f.given.data_dir,
                         "data directory: the IDX files (default: the data set's own, e.g. "
                         "data/mnist), or the folder of pictures of --dataset folder"),
         FIELD(std::string, data_dir));
  f.bind(add_dataset_option(cmd, f.given.dataset, "data set to train on")->capture_default_str(),
         FIELD(std::string, dataset));
  f.add<int64_t>(cmd, "--epochs", FIELD(int64_t, epochs), "epochs to train (with --resume: the new total)");
  f.add<int64_t>(cmd, "--batch-size", FIELD(int64_t, batch_size),
                 "training batch size of each process; the run's (global) batch is this times "
                 "the world size, and config.json records that");
  f.add<double>(cmd, "--lr", FIELD(double, lr), "Adam learning rate");
  f.add<double>(cmd, "--lr-decay", FIELD(double, lr_decay),
                "lr multiplier per epoch, applied smoothly every step (the authors' 0.96 per "
                "2,000 steps of 128 is 0.9905 per MNIST epoch; seed: 1); in (0, 1], checked "
                "with the other options by the library (validate)");
  f.add<double>(cmd, "--lr-min", FIELD(double, lr_min),
                "floor of the decayed lr (Efficient-CapsNet's recipe: 5e-5; 0: none)");
  f.add<uint64_t>(cmd, "--seed", FIELD(uint64_t, seed), "random seed (init, order, shifts)");
  f.bind(add_threads_option(cmd, f.given.threads), FIELD(int, threads));
  f.add<int64_t>(cmd, "--limit", FIELD(int64_t, limit), "train on the first N images (0: all)");
  f.add<int64_t>(cmd, "--test-limit", FIELD(int64_t, test_limit),
                 "evaluate on the first N test images (0: all)");
  f.add<int64_t>(cmd, "--eval-batch-size", FIELD(int64_t, eval_batch_size),
                 "batch size of the per-epoch evaluation");
  f.add<int64_t>(cmd, "--validation-split", FIELD(int64_t, validation_split),
                 "hold out N training examples (stratified, drawn from --seed, recorded in the "
                 "checkpoint) and choose best.pt on them; the test set is then only reported "
                 "(0: best.pt is chosen on the test set, an optimistic figure)");
}

// --dataset folder: how the user's pictures are read, split and augmented.
void add_folder_options(CLI::App* cmd, Flags& f) {
  const std::string group =
      "Your own pictures (--dataset folder --data DIR; docs/own-data.md)";
  f.add<double>(cmd, "--test-fraction", FIELD(double, folder.test_fraction),
                "share of each class held out for testing when DIR has no train/ and test/ "
                "(stratified, drawn from --seed, recorded in the checkpoint)")
      ->group(group);
  const CLI::Validator channels =
      CLI::CheckedTransformer(std::map<std::string, int64_t>{{"auto", 0}, {"1", 1}, {"3", 3}});
  f.bind(cmd->add_option("--channels", f.given.folder.channels,
                         "auto (3 when any training picture is in colour), 1 or 3")
             ->transform(channels)
             ->type_name("auto|1|3")
             ->default_str("auto")
             ->group(group),
         FIELD(int64_t, folder.channels));
  f.add<int64_t>(cmd, "--image-size", FIELD(int64_t, folder.image_size),
                 "side pictures are resized to (shorter side, then a centre crop); 0: the "
                 "median shorter side of the training pictures")
      ->group(group);
  f.add<int64_t>(cmd, "--crop", FIELD(int64_t, folder.crop),
                 "the network's input side: a random crop in training with --augment, the "
                 "centre otherwise and in testing (0: the image size)")
      ->group(group);
  f.add_flag(cmd, "--augment", FIELD(bool, folder.augment),
             "random crops (with --crop) and horizontal flips in training, for natural "
             "pictures (digits keep --shift)")
      ->group(group);
  f.add<int64_t>(cmd, "--cache-mb", FIELD(int64_t, folder.cache_mb),
                 "decoded pictures held in memory per split, MiB; the rest are decoded for each "
                 "batch by worker threads, ahead of time")
      ->group(group);
  f.add<int64_t>(cmd, "--loader-threads", FIELD(int64_t, folder.loader_threads),
                 "beyond the cache: threads decoding the next batch while one trains (0: "
                 "decode each batch when it is needed)")
      ->group(group);
  f.add_flag(cmd, "--strict", FIELD(bool, folder.strict),
             "an unreadable, corrupt or non-picture file is an error (default: skipped, "
             "counted and listed)")
      ->group(group);
}

// torchrun's contract; the flags win over the environment variables. Their
// bounds are dist::resolve's; only negative values are refused here, which
// DistOptions reads as "not given".
void add_dist_options(CLI::App* cmd, dist::DistOptions& dist) {
  const std::string group = "Data-parallel training (torchrun's variables, or these flags)";
  cmd->add_option("--rank", dist.rank, "this process's rank (RANK; default 0)")
      ->check(CLI::NonNegativeNumber)->group(group);
  cmd->add_option("--world-size", dist.world_size, "number of processes (WORLD_SIZE; default 1)")
      ->check(CLI::NonNegativeNumber)->group(group);
  cmd->add_option("--local-rank", dist.local_rank,
                  "rank on this machine: its GPU with --device cuda (LOCAL_RANK; default the rank)")
      ->check(CLI::NonNegativeNumber)->group(group);
  cmd->add_option("--master-addr", dist.master_addr,
                  "address of rank 0, which hosts the rendezvous store (MASTER_ADDR; default "
                  "127.0.0.1)")
      ->group(group);
  cmd->add_option("--master-port", dist.master_port, "its port (MASTER_PORT; default 29500)")
      ->check(CLI::NonNegativeNumber)->group(group);
  add_enum_option(cmd, "--backend", dist.backend,
                  "collectives: gloo (CPU), nccl (CUDA); auto picks by device")
      ->group(group);
  cmd->add_option("--dist-timeout", dist.timeout_seconds,
                  "seconds a rank waits for the others (rendezvous, each collective) before "
                  "failing")
      ->capture_default_str()->group(group);
  cmd->add_option("--grad-bucket-mb", dist.bucket_megabytes,
                  "gradient bucket size; each bucket's all-reduce starts as soon as backward "
                  "has filled it")
      ->capture_default_str()->group(group);
  cmd->add_flag("--no-grad-overlap{false}", dist.overlap,
                "start the all-reduces only after backward (to measure what overlap gains)")
      ->group(group);
}

// Every value the command line gives train; the runner owns it.
struct TrainFlags {
  Flags flags;
  RunRequest run; ///< --preset, --out, --resume, --resume-if-exists
  TrainControl control; ///< --force, --time-limit, --cuda-graph
  dist::DistOptions dist;
};

// The run the command line asks for (the library's run policy, resolve_run).
ResolvedRun resolve(const TrainFlags& t, const dist::DistOptions& distributed) {
  RunRequest request = t.run;
  request.world_size = distributed.world_size;
  for (const auto& [option, apply] : t.flags.bound) {
    if (option->count() > 0) request.given.push_back({option->get_name(), apply});
  }
  return resolve_run(request);
}

int run_train(const TrainFlags& t) {
  const auto distributed = dist::resolve(t.dist);
  if (distributed.world_size > 1) {
    set_program_name("capsnet[rank " + std::to_string(distributed.rank) + "]");
  }
  const auto run = resolve(t, distributed);
  const auto& options = run.options;
  const auto& run_dir = run.run_dir;
  TrainControl control = t.control;
  control.resume = run.resuming;
  control.replace_unfinished = t.run.resume_if_exists;
  control.distributed = distributed;
  StopSignals signals;
  control.stop = &signals.stop();
  control.log = &std::cout;
  control.terminal = ::isatty(STDOUT_FILENO);
  set_thread_count(options.threads, distributed.local_world_size); // 0: this machine's share
  if (distributed.rank == 0) std::cout << "run directory: " << run_dir << std::endl;
  const auto report = train(options, run_dir, control);
  if (distributed.rank == 0) { // where the run stands; an interruption on stderr
    const auto outcome = run_outcome(report, options, run_dir, control.time_limit_seconds);
    (outcome.error ? std::cerr << program_name() << ": " : std::cout) << outcome.text << std::flush;
  }
  return report.interrupted && !report.time_limit_reached ? signals.exit_code() : 0;
}

} // namespace

Runner add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "train", "Train a capsule network (--model, --preset); evaluates on the test set after each epoch");
  auto t = std::make_shared<TrainFlags>();
  cmd->add_option("--preset", t->run.preset,
                  presets_text() + " Options given explicitly override the preset.")
      ->check(CLI::IsMember(preset_names()))
      ->capture_default_str();
  add_run_options(cmd, t->flags);
  add_folder_options(cmd, t->flags);
  add_model_options(cmd, t->flags);
  add_objective_options(cmd, t->flags);
  add_architecture_options(cmd, t->flags);
  cmd->add_option("--out", t->run.out, "run directory (default: runs/DATASET-PRESET-TIMESTAMP)");
  auto* resume_opt = cmd->add_option("--resume", t->run.resume,
                                     "continue the run in RUN_DIR from its last.pt (" +
                                         resume_may_change_text() + " may change)");
  resume_opt->excludes(cmd->get_option("--out"))->excludes(cmd->get_option("--preset"));
  auto* again = cmd->add_flag(
      "--resume-if-exists", t->run.resume_if_exists,
      "resume the run in --out from its last.pt when there is one (its options must match those "
      "given, as --resume checks), else start it there (replacing what a start that died before "
      "its first checkpoint left): one command line for every start, for torchrun --max_restarts "
      "and capsnet launch --max-restarts");
  again->needs(cmd->get_option("--out"))->excludes(resume_opt);
  add_dist_options(cmd, t->dist);
  cmd->add_option("--time-limit", t->control.time_limit_seconds,
                  "wall-clock budget in seconds (0: none): stop at the last epoch boundary that "
                  "fits it, judged by the longest epoch so far, with last.pt written; an epoch "
                  "that overruns it anyway (the first) stops mid-epoch; continue with --resume")
      ->check(finite_range(0, 1e9));
  add_enum_option(cmd, "--cuda-graph", t->control.cuda_graph, "steps as a CUDA graph (auto: GPU, 1 process)");
  cmd->add_flag("--force", t->control.force,
                "train in a directory that is not empty (its config.json and metrics.jsonl are "
                "replaced), or resume on other data than the run recorded");
  return [t]() { return run_train(*t); };
}

#undef FIELD

} // namespace capsnet::cli
