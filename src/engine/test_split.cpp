#include "capsnet/engine/test_split.h"

#include "capsnet/data/registry.h"
#include "capsnet/io/atomic_file.h"
#include "capsnet/registry/models.h"

#include <algorithm>

namespace capsnet {

std::string test_data_dir(const TrainOptions& options, const std::string& data_dir,
                          const std::string& dataset) {
  // A new --dataset without --data: that data set's own directory.
  const auto dir = !data_dir.empty() ? data_dir : !dataset.empty() ? "" : options.data_dir;
  return dir.empty() ? dataset_info(dataset.empty() ? options.dataset : dataset).default_dir : dir;
}

Dataset load_test_split(TrainOptions& options, const std::string& data_dir,
                        const std::string& dataset, int64_t limit, const DataShape& trained,
                        std::ostream* log) {
  const auto dir = test_data_dir(options, data_dir, dataset);
  const bool same_data = dataset.empty() || dataset == options.dataset;
  if (!dataset.empty()) options.dataset = dataset;
  auto request = data_request(options, Split::kTest, dir, same_data ? &trained : nullptr);
  request.limit = limit;
  if (!same_data) {  // a folder read as the model's input: its channels and size
    request.folder.image_size =
        trained.preparation == Preparation::kResize ? trained.resize : trained.image_size;
    request.folder.channels = trained.channels;
  }
  request.log = log;
  return load_dataset(options.dataset, request);
}

Batch test_examples(const TrainOptions& options, const Dataset& data, int64_t limit,
                    const DataShape& trained) {
  const auto& info = dataset_info(options.dataset);
  auto prepared = source_options(options, trained);
  if (prepared.crop == 0) require_image_size(info, data, trained.image_size);
  prepared.normalize = false;  // what the model sees, before standardisation
  const auto source = make_source(info, data, Split::kTest, prepared, c10::Device(c10::kCPU));
  const int64_t n = limit > 0 ? std::min(limit, source->size()) : source->size();
  return source->get(at::arange(n, at::kLong), nullptr);
}

void check_outputs_against(const std::vector<std::string>& outputs, const std::string& checkpoint,
                           const TrainOptions& options, const std::string& data_dir,
                           const std::string& dataset) {
  auto inputs = files_in(test_data_dir(options, data_dir, dataset));
  inputs.push_back(checkpoint);
  check_outputs(outputs, inputs);
}

CheckpointEval evaluate_checkpoint(const CheckpointEvalRequest& request, std::ostream* log) {
  auto loaded = load_checkpoint(request.checkpoint);
  auto options = loaded.options;
  check_outputs_against(request.outputs, request.checkpoint, options, request.data_dir,
                        request.dataset);
  options.eval_batch_size = request.batch_size;
  validate(options); // the library's bound of the batch size
  loaded.module().to(request.device);
  loaded.task()->set_execution(request.routing, request.precision); // on the shared network
  auto data = load_test_split(options, request.data_dir, request.dataset, request.limit,
                              loaded.shape, log);
  const auto& info = dataset_info(options.dataset);
  if (request.confusion && info.labels_per_image != 1) {
    throw std::invalid_argument("--confusion: a confusion matrix needs one label per image, and " +
                                info.name + "'s images have " +
                                std::to_string(info.labels_per_image) +
                                "; leave --confusion out");
  }
  auto result = evaluate(loaded, data, options);
  EvalReport report{request.checkpoint, options.dataset, options.preset, loaded.state.epoch,
                    request.precision, loaded.shape};
  return {std::move(loaded), std::move(options), std::move(data), std::move(result),
          std::move(report)};
}

} // namespace capsnet
