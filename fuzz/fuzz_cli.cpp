// libFuzzer target: capsnet's command line, parsed by the App that main builds
// (cli_app.h); no command runs. The input is one argument per line. A line
// that starts with \x01 is replaced by a word drawn (by its next two bytes)
// from the App's own vocabulary: every subcommand and option name, the
// `--name=` forms, each option's choices and default, and numbers and words
// on and past the options' bounds. A line that starts with \x02 appends such a
// word to the argument before it (`--epochs=` then `5`, `-h` then `x`). Other
// lines are taken as they are, so the seeds in fuzz/corpus/cli/ are plain
// argument lists that do not depend on the vocabulary's order.
//
// CLI::ParseError is the App refusing (main prints it and exits); any other
// exception out of parse would end capsnet in std::terminate, and is a finding
// like a crash or a sanitizer report.
//
// One App parses every input: building it takes ~8 ms under the sanitizers
// (CLI11 checks each new option's names against all before it), and a fresh
// App per input ran ~100 inputs/s where this runs ~2,500 (one core).
// CLI11 clears the App's parse results before each parse; what stays
// from one input to the next is only the values bound variables hold, which
// only the runners read. A finding is then run alone, on a fresh App
// (fuzz_cli FILE), to be sure it is the input's.
#include "cli_app.h"

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <streambuf>
#include <string>
#include <vector>

namespace {

/// An ostream that drops what it is given: help and error text are still
/// formatted, as main formats them, but not printed.
class NullBuffer : public std::streambuf {
 protected:
  int overflow(int c) override { return traits_type::not_eof(c); }
};
NullBuffer null_buffer;
std::ostream null_out(&null_buffer);

/// Values on and past the bounds the options check: integer widths, ranges,
/// floats that are not finite, odd spellings, paths, devices.
const char* const kValues[] = {
    "0", "1", "-1", "2", "3", "8", "28", "36", "255", "256", "1023", "1024", "1025", "4096",
    "4097", "65535", "65536", "65537", "100000", "100001", "2147483647", "2147483648",
    "-2147483649", "4294967296", "9223372036854775807", "9223372036854775808",
    "-9223372036854775809", "18446744073709551615", "18446744073709551616", "1e9", "1e300",
    "1e309", "-1e309", "1e-7", "5e-324", "0.5", "0.001", "0.0009", "86400", "86401", "nan",
    "-nan", "inf", "-inf", "0x10", "010", "1.5", "-0", "+1", " 1", "1 ", "", " ", "-", "--",
    "---", "--=", "-=", "true", "false", "on", "off", "yes", "no", "cuda", "cuda:0", "cuda:-1",
    "cuda:99999999999", "localhost", "::1", "a.png", "/dev/null", "/", ".", "{}", "[]", "\xff",
    "\xc3\xa9", "a,b", "a b", "\"", "'"};

void collect_words(const CLI::App& cmd, std::vector<std::string>& words) {
  for (const CLI::Option* option : cmd.get_options()) {
    for (const auto& name : option->get_lnames()) {
      words.push_back("--" + name);
      words.push_back("--" + name + "=");
    }
    for (const auto& name : option->get_snames()) words.push_back("-" + name);
    if (!option->get_default_str().empty()) words.push_back(option->get_default_str());
    // The choices, as the help shows them: TEXT:{paper,seed}.
    const auto type = option->get_type_name();
    const auto open = type.find('{'), close = type.find('}', open);
    if (open != std::string::npos && close != std::string::npos) {
      size_t start = open + 1;
      for (size_t comma; (comma = type.find(',', start)) < close; start = comma + 1) {
        words.push_back(type.substr(start, comma - start));
      }
      words.push_back(type.substr(start, close - start));
    }
  }
  for (const CLI::App* sub : cmd.get_subcommands([](const CLI::App*) { return true; })) {
    words.push_back(sub->get_name());
    collect_words(*sub, words);
  }
}

/// The App that main builds: the subcommands, and the hidden --list-options
/// (its listing goes nowhere). `commands` holds what the options write into.
struct Cli {
  CLI::App app;
  capsnet::cli::Commands commands = capsnet::cli::add_commands(app);
  Cli() { capsnet::cli::add_list_options_flag(app, commands, null_out); }
};

Cli& the_cli() {
  static Cli cli;
  return cli;
}

const std::vector<std::string>& vocabulary() {
  static const std::vector<std::string> words = [] {
    std::vector<std::string> all(std::begin(kValues), std::end(kValues));
    collect_words(the_cli().app, all);
    std::vector<std::string> unique;
    for (const auto& word : all) {
      if (std::find(unique.begin(), unique.end(), word) == unique.end()) unique.push_back(word);
    }
    return unique;
  }();
  return words;
}

constexpr size_t kMaxArguments = 64;

std::vector<std::string> arguments(const uint8_t* data, size_t size) {
  const auto& words = vocabulary();
  std::vector<std::string> args = {"capsnet"};
  const auto* end = data + size;
  for (const auto* line = data; line < end && args.size() <= kMaxArguments;) {
    const auto* stop = std::find(line, end, uint8_t('\n'));
    if (*line == 1 || *line == 2) {
      const size_t pick = (stop - line > 1 ? line[1] << 8 : 0) | (stop - line > 2 ? line[2] : 0);
      const auto& word = words[pick % words.size()];
      if (*line == 1) {
        args.push_back(word);
      } else {
        args.back() += word;
      }
    } else {
      args.emplace_back(line, stop);
    }
    line = stop + 1;
  }
  return args;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto args = arguments(data, size);
  std::vector<const char*> argv;
  for (const auto& arg : args) argv.push_back(arg.c_str());
  auto& [app, commands] = the_cli();
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    app.exit(e, null_out, null_out);
    return 0;
  }
  // What main would run next: exactly one subcommand, and its runner.
  if (!capsnet::cli::parsed_runner(app, commands)) __builtin_trap();
  return 0;
}
