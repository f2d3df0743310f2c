// Reading road signs live with the C++ wrapper of ps3rt: frames in, one line per frame out,
//
//   frame 123: speed limit 60 (0.42) at [x y w h], 41 ms
//
// the best label of the frame's best selected regions (PS3's attention-pool head over the region's
// high-res tokens, scored against the package's label bank with SigLIP's calibrated sigmoid), its box
// in frame pixels and the frame's latency (encode + labels). docs/labels.md explains every step.
//
//   road_signs [--package DIR] [--prompt TEXT] [--budget K] [--frames N] [--regions R]
//              [--y4m FILE | --ppm FILE...]
//
// Frames come from a 4:2:0 y4m video (ffmpeg -i drive.mp4 -pix_fmt yuv420p drive.y4m) or a camera
// piped in as y4m (ffmpeg -f v4l2 -i /dev/video0 -pix_fmt yuv420p -f yuv4mpegpipe - | road_signs
// --y4m -), from PPM
// (P6) files, or, by default, from a synthetic road scene drawn here (signs moving towards the
// camera), so the example runs anywhere. --prompt selects top-down ("speed limit sign"): free text
// through the package's text tower, else a label of its bank.
//
// The embedded tiny package has random weights: its labels are noise (the example says so). With a
// real checkpoint (docs/labels.md):
//   tools/export/ps3_export.py --checkpoint ~/ckpt/PS3-4K-SigLIP2 --tokenizer ~/ckpt/siglip2-tokenizer
//       --out packages/ps3-4k --budget 1024 --text-tower   (one command line)
//   road_signs --package packages/ps3-4k --prompt "speed limit sign" --y4m drive.y4m
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "ps3rt.hpp"

namespace {

struct Args {
    std::string package, prompt, y4m;
    std::vector<std::string> ppm;
    std::size_t budget = 1024, regions = 8;
    int frames = 5;
};

bool parse(int argc, char** argv, Args& a) {
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        bool has_value = i + 1 < argc;
        if (arg == "--package" && has_value) {
            a.package = argv[++i];
        } else if (arg == "--prompt" && has_value) {
            a.prompt = argv[++i];
        } else if (arg == "--budget" && has_value) {
            a.budget = std::strtoul(argv[++i], nullptr, 10);
        } else if (arg == "--frames" && has_value) {
            a.frames = std::atoi(argv[++i]);
        } else if (arg == "--regions" && has_value) {
            a.regions = std::strtoul(argv[++i], nullptr, 10);
        } else if (arg == "--y4m" && has_value) {
            a.y4m = argv[++i];
        } else if (arg == "--ppm") {
            while (i + 1 < argc && argv[i + 1][0] != '-') a.ppm.emplace_back(argv[++i]);
        } else {
            return false;
        }
    }
    return a.frames > 0 && a.budget > 0;
}

// A frame as the caller owns it: packed RGB8, or the three planes of I420.
struct Image {
    std::uint32_t width = 0, height = 0;
    bool yuv = false;
    std::vector<std::uint8_t> rgb, y, u, v;
};

// 4:2:0 y4m frames, one after the other, from a file or ("-") standard input, so a camera can be
// piped in: ffmpeg -f v4l2 -i /dev/video0 -pix_fmt yuv420p -f yuv4mpegpipe - | road_signs --y4m -
class Y4mReader {
public:
    explicit Y4mReader(const std::string& path) {
        if (path == "-") {
            std::ios::sync_with_stdio(false);
            in_ = &std::cin;
        } else {
            file_.open(path, std::ios::binary);
            if (!file_) throw std::runtime_error(path + ": cannot open");
            in_ = &file_;
        }
        std::string header;
        std::getline(*in_, header);
        std::istringstream words(header);
        std::string w;
        words >> w;
        if (w != "YUV4MPEG2") throw std::runtime_error(path + ": not a y4m file");
        while (words >> w) {
            if (w[0] == 'W') width_ = static_cast<std::uint32_t>(std::stoul(w.substr(1)));
            if (w[0] == 'H') height_ = static_cast<std::uint32_t>(std::stoul(w.substr(1)));
            if (w[0] == 'C' && w.rfind("C420", 0) != 0)
                throw std::runtime_error(path + ": colour space " + w + " (4:2:0 only)");
        }
        if (width_ == 0 || height_ == 0) throw std::runtime_error(path + ": no size in the header");
    }
    bool next(Image& f) {
        std::string line;
        if (!std::getline(*in_, line) || line.rfind("FRAME", 0) != 0) return false;
        std::uint32_t cw = (width_ + 1) / 2, ch = (height_ + 1) / 2;
        f = Image{width_, height_, true, {}, std::vector<std::uint8_t>(std::size_t{width_} * height_),
                  std::vector<std::uint8_t>(std::size_t{cw} * ch), std::vector<std::uint8_t>(std::size_t{cw} * ch)};
        for (auto* p : {&f.y, &f.u, &f.v})
            if (!in_->read(reinterpret_cast<char*>(p->data()), static_cast<std::streamsize>(p->size())))
                return false;
        return true;
    }

private:
    std::ifstream file_;
    std::istream* in_ = nullptr;
    std::uint32_t width_ = 0, height_ = 0;
};

Image read_ppm(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::string magic;
    unsigned w = 0, h = 0, maxval = 0;
    in >> magic >> w >> h >> maxval;
    in.get();
    if (!in || magic != "P6" || maxval != 255 || w == 0 || h == 0)
        throw std::runtime_error(path + ": not an 8-bit binary PPM (P6)");
    Image f{w, h, false, std::vector<std::uint8_t>(std::size_t{w} * h * 3), {}, {}, {}};
    if (!in.read(reinterpret_cast<char*>(f.rgb.data()), static_cast<std::streamsize>(f.rgb.size())))
        throw std::runtime_error(path + ": truncated");
    return f;
}

// A synthetic road: sky, asphalt with lane marks, a red octagon and a round speed-limit sign that
// grow as they come closer, frame after frame.
Image synthetic(int t, std::uint32_t w = 1920, std::uint32_t h = 1080) {
    Image f{w, h, false, std::vector<std::uint8_t>(std::size_t{w} * h * 3), {}, {}, {}};
    auto put = [&](std::uint32_t x, std::uint32_t y, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
        std::uint8_t* p = &f.rgb[(std::size_t{y} * w + x) * 3];
        p[0] = r, p[1] = g, p[2] = b;
    };
    for (std::uint32_t y = 0; y < h; y++)
        for (std::uint32_t x = 0; x < w; x++) {
            if (y < h / 2) put(x, y, 120, 170, static_cast<std::uint8_t>(200 + y * 50 / h));
            else {
                bool mark = (x / 6 == w / 12) && ((y / 40 + static_cast<std::uint32_t>(t)) % 2 == 0);
                std::uint8_t a = static_cast<std::uint8_t>(70 + ((x * 7 + y * 13) % 17));
                mark ? put(x, y, 230, 230, 230) : put(x, y, a, a, a);
            }
        }
    auto sign = [&](double cx, double cy, double r, bool octagon) {
        for (int dy = static_cast<int>(-r); dy <= static_cast<int>(r); dy++)
            for (int dx = static_cast<int>(-r); dx <= static_cast<int>(r); dx++) {
                double ax = std::abs(dx), ay = std::abs(dy), d2 = ax * ax + ay * ay;
                bool in = octagon ? (ax <= r && ay <= r && ax + ay <= 1.41 * r) : d2 <= r * r;
                if (!in) continue;
                int x = static_cast<int>(cx) + dx, y = static_cast<int>(cy) + dy;
                if (x < 0 || y < 0 || x >= static_cast<int>(w) || y >= static_cast<int>(h)) continue;
                bool ring = octagon ? (ax + ay > 1.2 * r || ax > 0.85 * r || ay > 0.85 * r) : d2 > 0.7 * r * r;
                bool glyph = !octagon && !ring && (dx / 4 + dy / 6) % 3 == 0;
                if (octagon) ring || (ay < 0.2 * r && ax < 0.6 * r) ? put(x, y, 250, 250, 250) : put(x, y, 200, 20, 30);
                else ring ? put(x, y, 210, 20, 30) : glyph ? put(x, y, 20, 20, 20) : put(x, y, 245, 245, 245);
            }
    };
    double grow = 1.0 + 0.15 * t;
    sign(w * 0.72, h * 0.38, 24 * grow, true);
    sign(w * 0.20, h * 0.35, 18 * grow, false);
    return f;
}

}  // namespace

int main(int argc, char** argv) {
    Args args;
    if (!parse(argc, argv, args)) {
        std::cerr << "usage: road_signs [--package DIR] [--prompt TEXT] [--budget K] [--frames N] "
                     "[--regions R] [--y4m FILE | --ppm FILE...]\n";
        return 2;
    }
    try {
        ps3rt::check_abi();
        ps3rt::Model model =
            args.package.empty() ? ps3rt::Model::embedded() : ps3rt::Model::load(args.package);
        ps3rt_labels_info info = model.labels_info();
        if (info.max_regions == 0 || info.label_count == 0) {
            std::cerr << "road_signs: package " << model.name()
                      << " has no region pool head or label bank; re-export it with "
                         "tools/export/ps3_export.py (docs/labels.md)\n";
            return 1;
        }
        std::printf("model %s: %zu labels (%s scores), %zu regions per pool run%s\n",
                    model.name().c_str(), info.label_count,
                    info.calibrated ? "calibrated" : "uncalibrated", info.max_regions,
                    info.has_text_tower ? ", text tower" : "");
        if (model.name().rfind("ps3-tiny", 0) == 0) {
            std::printf("note: %s has random weights, so these labels are noise: they show the "
                        "pipeline, not a reading of the signs (docs/labels.md: export a real "
                        "checkpoint)\n",
                        model.name().c_str());
        }
        ps3rt::Encoder encoder(model, std::min<std::size_t>(args.budget, model.info().total_high_patches));
        if (!args.prompt.empty()) {
            if (info.has_text_tower) encoder.set_prompt_text(args.prompt);
            else encoder.set_prompt_label(args.prompt);
            std::printf("top-down prompt: \"%s\"\n", args.prompt.c_str());
        }

        std::unique_ptr<Y4mReader> video;
        if (!args.y4m.empty()) video = std::make_unique<Y4mReader>(args.y4m);
        int frames = args.ppm.empty() ? args.frames : static_cast<int>(args.ppm.size());
        for (int t = 0; t < frames; t++) {
            Image img;
            if (video) {
                if (!video->next(img)) break;
            } else if (!args.ppm.empty()) {
                img = read_ppm(args.ppm[static_cast<std::size_t>(t)]);
            } else {
                img = synthetic(t);
            }
            auto start = std::chrono::steady_clock::now();
            if (img.yuv) {
                encoder.encode(ps3rt::i420_frame(img.y.data(), img.width, img.u.data(),
                                                 (img.width + 1) / 2, img.v.data(),
                                                 (img.width + 1) / 2, img.width, img.height));
            } else {
                encoder.encode(img.rgb.data(), img.width, img.height, PS3RT_PIXEL_FORMAT_RGB8);
            }
            ps3rt::RegionLabels labels = encoder.label_regions(1, args.regions);
            double ms = std::chrono::duration<double, std::milli>(
                            std::chrono::steady_clock::now() - start)
                            .count();
            // The frame's answer: the best-scoring label over its labelled regions.
            const ps3rt_region_label* best = nullptr;
            for (const ps3rt_region_label& r : labels.regions())
                if (r.label_count > 0 && (!best || r.labels[0].score > best->labels[0].score)) best = &r;
            if (best) {
                std::printf("frame %d: %s (%.2f) at [%.0f %.0f %.0f %.0f], %.0f ms\n", t,
                            best->labels[0].label, best->labels[0].score, best->bbox.x, best->bbox.y,
                            best->bbox.w, best->bbox.h, ms);
            } else {
                std::printf("frame %d: no region, %.0f ms\n", t, ms);
            }
        }
    } catch (const ps3rt::Error& e) {
        std::cerr << "ps3rt error " << static_cast<int>(e.status()) << ": " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "road_signs: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
