#pragma once

// One table of names per enum, declared with CAPSNET_ENUM_NAMES beside the
// enum. It serves JSON (options, checkpoints), the command line (CLI11's
// CheckedTransformer over enum_map) and messages (enum_name).
//
// Why not NLOHMANN_JSON_SERIALIZE_ENUM: it reads an unknown name as the
// table's first value, silently. A checkpoint or config naming a routing or
// loss that this build does not know must fail with the name in the message,
// so from_json here throws, and the table is reachable for CLI11 and errors.

#include <nlohmann/json.hpp>

#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace capsnet {

/// Specialised by CAPSNET_ENUM_NAMES: `what` (e.g. "routing softmax") and the
/// (value, name) pairs.
template <typename E>
struct EnumNames;

template <typename E>
std::string enum_name(E value) {
  for (const auto& [v, name] : EnumNames<E>::values()) {
    if (v == value) return name;
  }
  return "<invalid " + std::string(EnumNames<E>::what()) + ">";
}

/// "a, b or c": the names, for help and error messages.
template <typename E>
std::string enum_choices() {
  const auto& values = EnumNames<E>::values();
  std::string out;
  for (size_t k = 0; k < values.size(); ++k) {
    out += (k == 0 ? "" : k + 1 == values.size() ? " or " : ", ") + std::string(values[k].second);
  }
  return out;
}

/// The value called `name`; throws std::invalid_argument naming the choices.
template <typename E>
E parse_enum(const std::string& name) {
  for (const auto& [value, known] : EnumNames<E>::values()) {
    if (name == known) return value;
  }
  throw std::invalid_argument("unknown " + std::string(EnumNames<E>::what()) + " '" + name +
                              "': expected " + enum_choices<E>());
}

/// name -> value, for CLI::CheckedTransformer.
template <typename E>
std::map<std::string, E> enum_map() {
  std::map<std::string, E> out;
  for (const auto& [value, name] : EnumNames<E>::values()) out.emplace(name, value);
  return out;
}

} // namespace capsnet

/// Use inside namespace capsnet, after the enum:
///   CAPSNET_ENUM_NAMES(Precision, "precision", {{Precision::kFp32, "fp32"}, ...})
#define CAPSNET_ENUM_NAMES(E, WHAT, ...)                                          \
  template <>                                                                     \
  struct EnumNames<E> {                                                           \
    static constexpr const char* what() { return WHAT; }                          \
    static const std::vector<std::pair<E, const char*>>& values() {               \
      static const std::vector<std::pair<E, const char*>> table = __VA_ARGS__;     \
      return table;                                                               \
    }                                                                             \
  };                                                                              \
  inline void to_json(nlohmann::json& j, E value) { j = enum_name(value); }       \
  inline void from_json(const nlohmann::json& j, E& value) {                      \
    value = parse_enum<E>(j.get<std::string>());                                  \
  }
