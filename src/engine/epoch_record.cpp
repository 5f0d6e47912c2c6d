#include "capsnet/engine/epoch_record.h"

#include <fstream>
#include <stdexcept>

namespace capsnet {

namespace {

// The fields every row has, and those of the evaluation, by nlohmann's macros.
struct TrainFields {
  int64_t epoch = 0;
  double train_loss = 0, train_accuracy = 0, lr = 0, seconds = 0, images_per_second = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(TrainFields, epoch, train_loss, train_accuracy, lr, seconds,
                                   images_per_second)

struct TestFields {
  double test_loss = 0, test_accuracy = 0;
  int64_t test_errors = 0, test_size = 0;
  double eval_seconds = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(TestFields, test_loss, test_accuracy, test_errors, test_size,
                                   eval_seconds)

bool is_field(const std::string& key) {
  static const nlohmann::json train = TrainFields{}, test = TestFields{};
  return train.contains(key) || test.contains(key);
}

} // namespace

void to_json(nlohmann::json& j, const EpochRecord& r) {
  j = TrainFields{r.epoch, r.train_loss, r.train_accuracy, r.lr, r.seconds, r.images_per_second};
  if (r.evaluated) {
    j.update(TestFields{r.test_loss, r.test_accuracy, r.test_errors, r.test_size, r.eval_seconds});
  }
  for (const auto& [name, value] : r.extra) j[name] = value;
}

void from_json(const nlohmann::json& j, EpochRecord& r) {
  j.at("epoch").get<int64_t>(); // the one field a row must have
  const auto train = j.get<TrainFields>();
  r = EpochRecord{};
  r.epoch = train.epoch;
  r.train_loss = train.train_loss;
  r.train_accuracy = train.train_accuracy;
  r.lr = train.lr;
  r.seconds = train.seconds;
  r.images_per_second = train.images_per_second;
  static const nlohmann::json test_keys = TestFields{};
  for (const auto& item : test_keys.items()) {
    if (j.contains(item.key())) r.evaluated = true;
  }
  if (r.evaluated) {
    const auto test = j.get<TestFields>();
    r.test_loss = test.test_loss;
    r.test_accuracy = test.test_accuracy;
    r.test_errors = test.test_errors;
    r.test_size = test.test_size;
    r.eval_seconds = test.eval_seconds;
  }
  for (const auto& [key, value] : j.items()) {
    if (!is_field(key) && value.is_number()) r.extra[key] = value.get<double>();
  }
}

namespace {

std::vector<EpochRecord> read_rows(std::istream& in, const std::string& source, bool skip_bad,
                                   bool need_test) {
  std::vector<EpochRecord> rows;
  std::string line;
  int64_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.empty()) continue;
    std::string why;
    try {
      rows.push_back(nlohmann::json::parse(line).get<EpochRecord>());
      if (need_test && !rows.back().evaluated) {
        rows.pop_back();
        why = "no test evaluation";
      }
    } catch (const nlohmann::json::exception& e) {
      why = e.what();
    }
    if (!why.empty() && !skip_bad) {
      throw std::invalid_argument(source + ":" + std::to_string(line_number) +
                                  ": not a metrics row (" + why + ")");
    }
  }
  return rows;
}

} // namespace

std::vector<EpochRecord> read_epoch_records(std::istream& in, const std::string& source,
                                            bool skip_bad) {
  return read_rows(in, source, skip_bad, /*need_test=*/false);
}

std::vector<EpochRecord> read_evaluated_epoch_records(std::istream& in, const std::string& source) {
  return read_rows(in, source, /*skip_bad=*/false, /*need_test=*/true);
}

std::vector<EpochRecord> read_epoch_records(const std::string& path, bool skip_bad) {
  std::ifstream in(path);
  if (!in) return {};
  return read_epoch_records(in, path, skip_bad);
}

} // namespace capsnet
