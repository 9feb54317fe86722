// Picks the backend: cpu, cuda, or auto (CUDA when this build has it and a device is present).
#pragma once
#include <memory>
#include <string>

#include "engine/backend.hpp"

namespace ebm {

std::unique_ptr<Backend> make_backend(const std::string& which, const EngineOptions& opt);
// Whether the CUDA backend can run here; the reason in *why_not when it cannot.
bool cuda_usable(std::string* why_not);

}  // namespace ebm
