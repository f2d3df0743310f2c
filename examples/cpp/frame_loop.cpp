// A camera-style frame loop with the C++ wrapper of ps3rt: one model, one encoder, frames in BGR8
// with padded rows (as a camera or OpenCV hands them over), the best region of each frame printed
// and a per-frame summary kept beyond the next encode.
//
//   frame_loop [--frames N] [--budget K] [--size WxH] [--package DIR] [--gpu DEVICE]
//
// --gpu resamples the frames on that CUDA device (an NVIDIA driver and NVRTC are needed), with the
// frames in page-locked memory (ps3rt::PinnedBuffer, what a camera should capture into: one DMA to
// the GPU, none on a Jetson); where the GPU cannot be used the loop says why and resamples on the
// CPU.
//
// The frames are synthetic (a bright square moving over a textured background), so the example
// runs anywhere; the embedded tiny model has random weights, so the regions it picks show the
// pipeline working, not a trained model's choice.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "ps3rt.hpp"

namespace {

struct Args {
    int frames = 5;
    std::size_t budget = 256;
    std::uint32_t width = 1280, height = 720;
    std::string package;
    int gpu = -1;
};

bool parse(int argc, char** argv, Args& a) {
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        bool has_value = i + 1 < argc;
        if (arg == "--frames" && has_value) {
            a.frames = std::atoi(argv[++i]);
        } else if (arg == "--budget" && has_value) {
            a.budget = std::strtoul(argv[++i], nullptr, 10);
        } else if (arg == "--size" && has_value) {
            unsigned w = 0, h = 0;
            if (std::sscanf(argv[++i], "%ux%u", &w, &h) != 2) return false;
            a.width = w, a.height = h;
        } else if (arg == "--package" && has_value) {
            a.package = argv[++i];
        } else if (arg == "--gpu" && has_value) {
            a.gpu = std::atoi(argv[++i]);
        } else {
            return false;
        }
    }
    return a.frames > 0;
}

// A BGR8 frame with each row padded to a multiple of 64 bytes.
struct CameraFrame {
    std::uint32_t width, height;
    std::size_t stride;
    std::vector<std::uint8_t> bytes;
};

CameraFrame render(std::uint32_t w, std::uint32_t h, int t) {
    CameraFrame f{w, h, (w * 3 + 63) / 64 * 64, {}};
    f.bytes.assign(f.stride * h, 0);
    std::uint32_t side = std::max<std::uint32_t>(8, h / 10);
    std::uint32_t x0 = (w - side) * static_cast<std::uint32_t>(t % 10) / 9, y0 = h / 3;
    for (std::uint32_t y = 0; y < h; y++) {
        std::uint8_t* row = f.bytes.data() + y * f.stride;
        for (std::uint32_t x = 0; x < w; x++) {
            bool square = x >= x0 && x < x0 + side && y >= y0 && y < y0 + side;
            std::uint8_t tex = static_cast<std::uint8_t>(((x / 24 + y / 24) & 1) ? 90 : 60);
            row[3 * x + 0] = square ? 40 : tex;                                   // blue
            row[3 * x + 1] = square ? 220 : static_cast<std::uint8_t>(tex + 10);  // green
            row[3 * x + 2] = square ? 250 : static_cast<std::uint8_t>(y * 255 / h);  // red
        }
    }
    return f;
}

}  // namespace

int main(int argc, char** argv) {
    Args args;
    if (!parse(argc, argv, args)) {
        std::cerr << "usage: frame_loop [--frames N] [--budget K] [--size WxH] [--package DIR] "
                     "[--gpu DEVICE]\n";
        return 2;
    }
    try {
        ps3rt::check_abi();
        ps3rt::set_log_function(
            [](ps3rt_log_level, const char* message) { std::cerr << "[ps3rt] " << message << "\n"; },
            PS3RT_LOG_LEVEL_WARN);
        ps3rt::Model model =
            args.package.empty() ? ps3rt::Model::embedded() : ps3rt::Model::load(args.package);
        ps3rt::Encoder encoder(model, args.budget);
        // Where the frames are captured when they are resampled on the GPU.
        std::optional<ps3rt::PinnedBuffer> pinned;
        if (args.gpu >= 0) {
            try {
                pinned.emplace(args.gpu, render(args.width, args.height, 0).bytes.size());
                encoder.set_preprocess(args.gpu);
                std::cout << "preprocessing on CUDA device " << args.gpu
                          << ", frames in page-locked memory\n";
            } catch (const ps3rt::Error& e) {
                pinned.reset();
                std::cout << "preprocessing on the CPU: GPU " << args.gpu << " unavailable ("
                          << e.what() << ")\n";
            }
        }
        std::cout << "model " << model.name() << " (" << model.info().origin << "), width "
                  << model.width() << ", ps3rt " << ps3rt::version() << "\n";

        // What outlives each encode: a copy of one pooled feature vector per frame.
        std::vector<std::vector<float>> pooled;
        for (int t = 0; t < args.frames; t++) {
            CameraFrame frame = render(args.width, args.height, t);
            const std::uint8_t* pixels = frame.bytes.data();
            if (pinned) {  // a camera would capture straight into it
                std::memcpy(pinned->data(), pixels, frame.bytes.size());
                pixels = pinned->data();
            }
            ps3rt::Output out = encoder.encode(pixels, frame.width, frame.height,
                                               PS3RT_PIXEL_FORMAT_BGR8, frame.stride);
            std::vector<float> mean(out.width(), 0.0f);
            for (std::size_t i = 0; i < out.token_count(); i++) {
                ps3rt::View<float> row = out.feature_row(i);
                for (std::size_t c = 0; c < row.size(); c++) mean[c] += row[c] / out.token_count();
            }
            pooled.push_back(std::move(mean));

            std::printf("frame %d: %zu tokens, %zu regions, %.1f ms (hrenc %.1f)", t,
                        out.token_count(), out.regions().size(), out.timings().total_ms,
                        out.timings().hrenc_ms);
            if (!out.regions().empty()) {
                const ps3rt_region& best = out.regions()[0];
                std::printf("; best %u px region at (%.0f, %.0f) %.0fx%.0f, score %.3f", best.scale,
                            best.bbox.x, best.bbox.y, best.bbox.w, best.bbox.h, best.score);
            }
            std::printf("\n");
        }
        std::printf("kept %zu pooled feature vectors of %zu values\n", pooled.size(),
                    pooled.empty() ? std::size_t{0} : pooled[0].size());

        // Errors are exceptions with the status and the library's message.
        try {
            ps3rt::Encoder too_big(model, model.info().total_high_patches + 1);
        } catch (const ps3rt::Error& e) {
            std::printf("expected error (status %d): %s\n", static_cast<int>(e.status()), e.what());
        }
        ps3rt::set_log_function(nullptr);
    } catch (const ps3rt::Error& e) {
        std::cerr << "ps3rt error " << static_cast<int>(e.status()) << ": " << e.what() << "\n";
        return 1;
    }
    return 0;
}
