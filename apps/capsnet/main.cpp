#include "commands.h"
#include "process.h"

#include "capsnet/data/idx_reader.h"
#include "capsnet/dist/process_group.h"
#include "capsnet/viz/image.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/runtime.h"
#include "capsnet/engine/step.h"
#include "capsnet/io/atomic_file.h"

#include <c10/util/Exception.h>

#include <iostream>
#include <stdexcept>

int main(int argc, char** argv) {
  capsnet::cli::ensure_fast_blas(argv);
  capsnet::cli::keep_freed_memory();
  CLI::App app{"capsnet: capsule networks with dynamic routing (Sabour, Frosst & Hinton, 2017)"};
  app.require_subcommand(1);
  auto train = capsnet::cli::add_train_command(app);
  auto eval = capsnet::cli::add_eval_command(app);
  auto bench = capsnet::cli::add_bench_command(app);
  auto predict = capsnet::cli::add_predict_command(app);
#ifdef CAPSNET_WITH_FIGURES
  auto reconstruct = capsnet::cli::add_reconstruct_command(app);
  auto perturb = capsnet::cli::add_perturb_command(app);
  auto plot = capsnet::cli::add_plot_command(app);
#else
  const std::string no_figures = "-DCAPSNET_WITH_FIGURES=OFF, without cairo";
  auto reconstruct = capsnet::cli::add_missing_command(app, "reconstruct", no_figures);
  auto perturb = capsnet::cli::add_missing_command(app, "perturb", no_figures);
  auto plot = capsnet::cli::add_missing_command(app, "plot", no_figures);
#endif
  auto export_ = capsnet::cli::add_export_command(app);
  auto launch = capsnet::cli::add_launch_command(app);
  auto experiment = capsnet::cli::add_experiment_command(app);
#ifdef CAPSNET_WITH_SERVE
  auto serve = capsnet::cli::add_serve_command(app);
#else
  auto serve = capsnet::cli::add_missing_command(app, "serve", "-DCAPSNET_WITH_SERVE=OFF, without cpp-httplib");
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (app.got_subcommand("train")) return train();
    if (app.got_subcommand("eval")) return eval();
    if (app.got_subcommand("bench")) return bench();
    if (app.got_subcommand("predict")) return predict();
    if (app.got_subcommand("reconstruct")) return reconstruct();
    if (app.got_subcommand("perturb")) return perturb();
    if (app.got_subcommand("plot")) return plot();
    if (app.got_subcommand("export")) return export_();
    if (app.got_subcommand("launch")) return launch();
    if (app.got_subcommand("experiment")) return experiment();
    if (app.got_subcommand("serve")) return serve();
  } catch (const capsnet::DataError& e) {
    std::cerr << capsnet::cli::program_name() << ": data error: " << e.what() << "\n";
  } catch (const capsnet::ImageError& e) {
    std::cerr << capsnet::cli::program_name() << ": image error: " << e.what() << "\n";
  } catch (const capsnet::CheckpointError& e) {
    std::cerr << capsnet::cli::program_name() << ": checkpoint error: " << e.what() << "\n";
  } catch (const capsnet::dist::DistributedError& e) {
    std::cerr << capsnet::cli::program_name() << ": distributed training stopped: " << e.what()
              << "\nlast.pt in the run directory holds the last finished epoch (or the last "
                 "interruption); continue with: capsnet train --resume RUN_DIR\n";
  } catch (const capsnet::TrainingError& e) {
    std::cerr << capsnet::cli::program_name() << ": training error: " << e.what() << "\n";
  } catch (const capsnet::WriteError& e) {
    std::cerr << capsnet::cli::program_name() << ": write error: " << e.what() << "\n";
  } catch (const std::invalid_argument& e) {
    std::cerr << capsnet::cli::program_name() << ": invalid option: " << e.what() << "\n";
  } catch (const c10::Error& e) {
    std::cerr << capsnet::cli::program_name() << ": internal error: " << e.what_without_backtrace() << "\n";
  } catch (const std::exception& e) {
    std::cerr << capsnet::cli::program_name() << ": error: " << e.what() << "\n";
  }
  return 1;
}
