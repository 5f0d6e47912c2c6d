// The command-line App, built once for the tool and for the fuzz target.
#include "cli_app.h"

#include "capsnet/recipes/about.h"

#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <ostream>

namespace capsnet::cli {

Commands add_commands(CLI::App& app) {
  app.require_subcommand(1);
  Commands commands;
  auto& run = commands.runners;
  run["train"] = add_train_command(app);
  run["eval"] = add_eval_command(app);
  run["bench"] = add_bench_command(app);
  run["predict"] = add_predict_command(app);
#ifdef CAPSNET_WITH_FIGURES
  run["reconstruct"] = add_reconstruct_command(app);
  run["perturb"] = add_perturb_command(app);
  run["attention"] = add_attention_command(app);
  run["plot"] = add_plot_command(app);
#else
  for (const std::string name : {"reconstruct", "perturb", "attention", "plot"}) {
    run[name] = add_missing_command(app, name, "-DCAPSNET_WITH_FIGURES=OFF, without cairo");
    commands.left_out.push_back(name);
  }
#endif
  run["export"] = add_export_command(app);
  run["launch"] = add_launch_command(app);
  run["experiment"] = add_experiment_command(app);
  run["data"] = add_data_command(app);
#ifdef CAPSNET_WITH_SERVE
  run["serve"] = add_serve_command(app);
#else
  run["serve"] = add_missing_command(app, "serve", "-DCAPSNET_WITH_SERVE=OFF, without cpp-httplib");
  commands.left_out.push_back("serve");
#endif
  const auto& out = commands.left_out;
  const BuildParts parts{std::find(out.begin(), out.end(), "plot") == out.end(),
                         std::find(out.begin(), out.end(), "serve") == out.end()};
  app.set_version_flag("--version", [parts] {
    const auto text = version_text(parts);
    return text.substr(0, text.size() - 1); // CLI11 ends it with a newline
  });
  return commands;
}

const Runner& parsed_runner(const CLI::App& app, const Commands& commands) {
  const auto parsed = app.get_subcommands();
  TORCH_INTERNAL_ASSERT(parsed.size() == 1, "require_subcommand(1) let ", parsed.size(),
                        " subcommands through");
  return commands.runners.at(parsed.front()->get_name());
}

namespace {

void write_options_of(const CLI::App& cmd, const std::string& path, bool in_build,
                      std::ostream& out) {
  nlohmann::json options = nlohmann::json::array();
  for (const CLI::Option* option : cmd.get_options()) {
    if (!option->nonpositional() || option == cmd.get_help_ptr() ||
        option == cmd.get_help_all_ptr()) {
      continue;
    }
    options.push_back({{"name", option->get_name()},
                       {"values", option->get_items_expected_min()},
                       {"default", option->get_default_str()}});
  }
  out << nlohmann::json{{"command", path}, {"in_build", in_build}, {"options", options}}.dump()
      << "\n";
  for (const CLI::App* sub : cmd.get_subcommands([](const CLI::App*) { return true; })) {
    write_options_of(*sub, path + " " + sub->get_name(), in_build, out);
  }
}

} // namespace

void write_option_list(const CLI::App& app, const std::vector<std::string>& left_out,
                       std::ostream& out) {
  for (const CLI::App* cmd : app.get_subcommands([](const CLI::App*) { return true; })) {
    const bool in_build =
        std::find(left_out.begin(), left_out.end(), cmd->get_name()) == left_out.end();
    write_options_of(*cmd, cmd->get_name(), in_build, out);
  }
}

void add_list_options_flag(CLI::App& app, const Commands& commands, std::ostream& out) {
  // Checked before require_subcommand (CLI11 runs callbacks first), so it
  // needs no subcommand; group "" hides it from --help.
  app.add_flag_callback(
         "--list-options",
         [&app, &out, left_out = commands.left_out]() {
           write_option_list(app, left_out, out);
           throw CLI::Success();
         },
         "print every subcommand's options as JSON lines (for tests)")
      ->group("");
}

} // namespace capsnet::cli
