// Energies for any images (ebm_score): loading a user's image file the way training saw its data,
// AUROC for out-of-distribution detection, and energy files.
//
// Orientation: energy E = −f, low = probable. An out-of-distribution image should get a HIGHER energy
// than an in-distribution one, so the tools report AUROC = P(E_ood > E_in) + ½·P(E_ood = E_in):
// 1 = every OOD image scores above every in-distribution image, 0.5 = no separation, 0 = reversed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/net.hpp"
#include "engine/tensor.hpp"

namespace ebm {

// Area under the ROC curve of `score` separating positives (higher = positive) from negatives:
// the Mann–Whitney U statistic over |pos|·|neg|, ties counted ½ (midranks). O((p+n)·log(p+n)).
// UserError when either set is empty or holds NaN (a NaN has no rank); ±inf rank as usual.
double auroc(const std::vector<float>& positives, const std::vector<float>& negatives);

// Images for a checkpoint's network, [N,1,in_h,in_w] in [-1,1], from
//   - .npy (detected by its magic): float32 already in [-1,1], or uint8 pixels 0..255 mapped as in
//     training; [N,1,H,W] or [N,H,W];
//   - IDX, raw or .gz (e.g. MNIST's t10k-images-idx3-ubyte.gz): uint8 [N,H,W].
// Images of the network's size are used as they are; smaller ones (MNIST's 28x28 for a 32x32 network)
// are padded with −1 as training pads them (preprocess_images' placement). Larger images, float values
// outside [-1,1], an empty set or file, a file named .npy that is not one, or a missing file are a
// UserError naming the file (and both sizes). `warnings` gets one line (starting with the path, without
// a tool's name) for what is not an error but likely makes the energies meaningless: float pixels
// that never go below 0 (images scaled to [0,1], not [-1,1]).
// `whose` names the network in messages ("images are 64x64 but the checkpoint's network takes 32x32").
Tensor load_images_for_net(const std::string& path, const NetSpec& net, std::vector<std::string>& warnings,
                           const std::string& whose = "the checkpoint's network");

// The same checks and conversion for images already in memory (a .npy file's, or the Python module's arrays):
// shape [N,1,H,W] or [N,H,W]; `u8` (uint8 pixels, N·H·W of them) when not null, else `f32` (floats in [-1,1]).
// `what` starts every message ("energy(x)", or the file's path).
Tensor images_for_net(const std::string& what, const std::vector<int64_t>& shape, const uint8_t* u8,
                      std::vector<float> f32, const NetSpec& net, std::vector<std::string>& warnings,
                      const std::string& whose = "the checkpoint's network");

// "" when every energy is finite; else one line for a warning: "3 of 64 energies of <what> are not
// finite (NaN or inf): the checkpoint may have diverged".
std::string non_finite_energies(const std::vector<float>& energy, const std::string& what);

// Pads [N,1,h,w] to [N,1,P,P] with −1, placed as preprocess_images places u8 images.
Tensor pad_images(const Tensor& x, int pad_to);

// Energies to a file chosen by extension (any case): `.npy` float32 [N]; `.csv` with a header line
// `index,energy` and one row per image (%.9g, so floats round-trip). Other extensions: UserError.
// Written to path.tmp, then renamed over the path.
void write_energies(const std::string& path, const std::vector<float>& energy);

// E = −f, elementwise.
std::vector<float> energies_from_f(const std::vector<float>& f);

// At most `max_rows` rows of t [n, image] (any shape whose rows hold net.image_size() values) as network inputs
// [m, C, H, W]: its first rows, or with `newest` its last (the replay buffer writes its newest last).
Tensor image_rows(const Tensor& t, const NetSpec& net, int64_t max_rows, bool newest);

struct EnergyStats {
  size_t count = 0;
  double mean = 0, min = 0, max = 0;
};
EnergyStats energy_stats(const std::vector<float>& e);

// A short name for a data file in printed lines and legends: "<parent dir>/<file>" ("mnist/t10k-images-idx3-ubyte.gz").
std::string data_label(const std::string& path);

}  // namespace ebm
