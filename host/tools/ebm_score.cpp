// ebm_score: energies E = -f of any images under a checkpoint, and with --ood the AUROC of energy
// separating the in-distribution set from a second one (OOD images should score higher), with a
// histogram of both sets' energies.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "host/eval/backend_factory.hpp"
#include "host/eval/jem_eval.hpp"
#include "host/eval/sampling.hpp"
#include "host/eval/scoring.hpp"
#include "host/io/charts.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/output_files.hpp"
#include "host/io/png_image.hpp"
#include "host/tools/cli.hpp"
#include "host/tools/tool_main.hpp"

using namespace ebm;
namespace fs = std::filesystem;

namespace {

constexpr const char* kUsage =
    "usage: ebm_score --checkpoint DIR --data PATH [--out energies.npy|.csv] [--ood PATH2 [--ood-out PATH]\n"
    "                 [--hist energy_hist.png]] [--backend auto|cpu|cuda]\n"
    "Energies E = -f (low = probable) of the images in PATH under the checkpoint's network. Images: IDX\n"
    "(raw or .gz, e.g. t10k-images-idx3-ubyte.gz) or .npy (float32 in [-1,1] or uint8 0..255, [N,1,H,W] or\n"
    "[N,H,W]); 28x28 images are padded to the network's input as in training.\n"
    "  --out PATH      the energies of --data: .npy float32 [N], or .csv `index,energy`, one row per image\n"
    "  --ood PATH2     a second (out-of-distribution) set: prints AUROC = P(E_ood > E_in) (ties 1/2) and\n"
    "                  writes a histogram of both sets' energies; for a model with one output per class\n"
    "                  (train.objective \"jem\"), E = -logsumexp f, also the AUROCs of its max softmax\n"
    "                  probability (lower = more unfamiliar) and of the norm of the input gradient of E\n"
    "  --ood-out PATH  the energies of --ood, as --out\n"
    "  --hist PATH     the histogram (default: energy_hist.png next to --out, else in the current dir; a\n"
    "                  build without libpng skips the default with a warning, and refuses a named --hist)\n"
    "  --backend B     auto (CUDA when a device is present), cpu or cuda (default auto)\n"
    "Every output path is checked before any work starts; nothing is written until every result is computed.\n";

constexpr const char* kTool = "ebm_score";

struct Flags {
  std::string checkpoint, data, out, ood, ood_out, hist, backend = "auto";
  bool hist_named = false;  // --hist given: a build without libpng refuses it; the default one is skipped instead
};

// Usage problems (an output that cannot be written among them) throw UserError from here: exit 2,
// before anything is read or written.
Flags parse(int argc, char** argv, bool& help) {
  Args a(argc, argv, {"--checkpoint", "--data", "--out", "--ood", "--ood-out", "--hist", "--backend"}, {"--help"});
  help = a.has("--help");
  Flags f;
  if (help) return f;
  if (!a.positional().empty()) user_fail("unexpected argument '", a.positional()[0], "' (see --help)");
  f.checkpoint = a.str("--checkpoint", "");
  f.data = a.str("--data", "");
  if (f.checkpoint.empty() || f.data.empty()) user_fail("--checkpoint DIR and --data PATH are required (see --help)");
  f.out = a.str("--out", "");
  f.ood = a.str("--ood", "");
  f.ood_out = a.str("--ood-out", "");
  f.hist = a.str("--hist", "");
  f.hist_named = a.has("--hist");
  f.backend = a.str("--backend", f.backend);
  if (f.backend != "auto" && f.backend != "cpu" && f.backend != "cuda")
    user_fail("option --backend expects auto, cpu or cuda, got \"", f.backend, "\"");
  if (f.ood.empty() && !f.ood_out.empty()) user_fail("--ood-out needs --ood PATH2");
  if (f.ood.empty() && !f.hist.empty()) user_fail("--hist draws the --data and --ood energies: give --ood PATH2 too");
  if (!f.ood.empty() && f.hist.empty())
    f.hist = f.out.empty() ? "energy_hist.png" : (fs::path(f.out).parent_path() / "energy_hist.png").string();

  std::vector<OutputFile> outputs;
  if (!f.out.empty()) outputs.push_back({"--out", f.out, {".npy", ".csv"}});
  if (!f.ood_out.empty()) outputs.push_back({"--ood-out", f.ood_out, {".npy", ".csv"}});
  if (f.hist_named) require_png_output("--hist", f.hist);
  if (!f.hist.empty() && (f.hist_named || png_available())) outputs.push_back({"--hist", f.hist, {".png"}});
  check_output_files(outputs, {{"--data", f.data}, {"--ood", f.ood}});
  return f;
}

void print_stats(const char* what, const std::string& path, const std::vector<float>& e) {
  const EnergyStats s = energy_stats(e);
  std::printf("%s: %s  %zu images  energy (E = -f) mean %.6g, min %.6g, max %.6g\n", what, path.c_str(), s.count, s.mean,
              s.min, s.max);
}

int run(const Flags& f) {
  const auto t0 = std::chrono::steady_clock::now();
  const Model model = load_model(f.checkpoint);
  // Read the images before starting a backend, so a bad path fails fast.
  std::vector<std::string> warnings;
  const Tensor x = load_images_for_net(f.data, model.net, warnings);
  const Tensor y = f.ood.empty() ? Tensor() : load_images_for_net(f.ood, model.net, warnings);
  for (const std::string& w : warnings) print_warning(kTool, w);

  auto backend = make_backend(f.backend, tool_engine_options(model));
  backend->set_params(model.params);
  std::printf("backend: %s\n", backend->describe().c_str());
  std::printf("checkpoint: %s (%lld parameters, input %dx%d)\n", f.checkpoint.c_str(), (long long)model.net.num_params,
              model.net.in_h, model.net.in_w);

  // Everything is computed (AUROC included, which refuses NaN energies) before anything is written, so
  // a failure leaves the user's files as they were.
  const std::vector<float> e_in = energies_from_f(backend->energy(x));
  print_stats("data", f.data, e_in);
  if (const std::string w = non_finite_energies(e_in, f.data); !w.empty()) print_warning(kTool, w);
  std::vector<float> e_ood;
  double a = 0;
  const std::string in_label = data_label(f.data), ood_label = data_label(f.ood);
  if (!f.ood.empty()) {
    e_ood = energies_from_f(backend->energy(y));
    print_stats("ood ", f.ood, e_ood);
    if (const std::string w = non_finite_energies(e_ood, f.ood); !w.empty()) print_warning(kTool, w);
    a = auroc(e_ood, e_in);
    std::printf("AUROC (energy, %s vs %s): %.4f\n", in_label.c_str(), ood_label.c_str(), a);
    if (model.net.outputs > 1) {  // a JEM model: its classifier's two other scores (host/eval/jem_eval.hpp)
      const OodAurocs j = ood_aurocs(classifier_scores(*backend, x, true), classifier_scores(*backend, y, true));
      std::printf("AUROC (max softmax probability, %s vs %s): %.4f\n", in_label.c_str(), ood_label.c_str(), j.max_prob);
      std::printf("AUROC (input-gradient norm of E, %s vs %s): %.4f\n", in_label.c_str(), ood_label.c_str(),
                  j.grad_norm);
    }
  }

  if (!f.out.empty()) {
    write_energies(f.out, e_in);
    std::printf("wrote %s (%zu energies)\n", f.out.c_str(), e_in.size());
  }
  if (!f.ood.empty()) {
    if (!f.ood_out.empty()) {
      write_energies(f.ood_out, e_ood);
      std::printf("wrote %s (%zu energies)\n", f.ood_out.c_str(), e_ood.size());
    }
    char title[64];
    std::snprintf(title, sizeof title, "Energy E = -f   AUROC %.4f", a);
    if (OptionalPictures(kTool, "the energy histogram " + f.hist).enabled(std::cerr)) {
      write_png(f.hist, histogram_png(e_in, e_ood, in_label, ood_label, title));
      std::printf("wrote %s\n", f.hist.c_str());
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("done in %.1f s\n", secs);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ebm::tool_main(kTool, kUsage, argc, argv, parse, run); }
