#include "dicom_io/web_images.h"

#include "dcmtk/config/osconfig.h"

#include <png.h>

#include <cstring>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dicom_io/volume_reader.h"

namespace triage::dicom_io {

namespace {

core::Error invalid(const std::string& why) { return core::make_error(core::ErrorKind::InvalidInput, why); }

void append_png_bytes(png_structp png, png_bytep data, png_size_t length) {
    auto* out = static_cast<std::string*>(png_get_io_ptr(png));
    out->append(reinterpret_cast<const char*>(data), length);
}

void flush_nothing(png_structp) {}

/// libpng reports errors through longjmp; the encoder keeps no C++ object with a destructor alive
/// between setjmp and the calls that may jump, except `out` and `rows`, which are declared before.
bool write_png(const RgbImage& img, std::string& out, std::vector<png_bytep>& rows) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    if (!png) return false;
    png_infop info = png_create_info_struct(png);
    if (!info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, info ? &info : nullptr);
        return false;
    }
    png_set_write_fn(png, &out, append_png_bytes, flush_nothing);
    png_set_IHDR(png, info, static_cast<png_uint_32>(img.columns), static_cast<png_uint_32>(img.rows), 8,
                 PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 3);  // a web image made per request: speed over the last bytes
    png_set_rows(png, info, rows.data());
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
    png_destroy_write_struct(&png, &info);
    return true;
}

}  // namespace

core::Result<std::string> encode_png(const RgbImage& img) {
    if (img.rows < 1 || img.columns < 1 || img.rgb.size() != static_cast<size_t>(img.rows) * img.columns * 3)
        return invalid("png: empty image or a buffer that does not match its size");
    std::vector<png_bytep> rows(static_cast<size_t>(img.rows));
    for (int y = 0; y < img.rows; ++y)
        rows[static_cast<size_t>(y)] = const_cast<png_bytep>(img.rgb.data() + static_cast<size_t>(y) * img.columns * 3);
    std::string out;
    if (!write_png(img, out, rows)) return core::make_error(core::ErrorKind::Internal, "png: libpng failed to encode");
    return out;
}

core::Result<RgbImage> render_stored_slice(const StoredSlice& s) {
    DcmFileFormat header;
    if (OFCondition c = header.loadFile(s.file.c_str(), EXS_Unknown, EGL_noChange, 1024); c.bad())
        return invalid(s.file + ": " + c.text());
    Uint16 rows = 0, columns = 0;
    header.getDataset()->findAndGetUint16(DCM_Rows, rows);
    header.getDataset()->findAndGetUint16(DCM_Columns, columns);
    auto frames = read_pixels(s.file);
    if (!frames) return frames.error();
    const size_t index = s.frame > 0 ? static_cast<size_t>(s.frame - 1) : 0;
    const size_t plane = static_cast<size_t>(rows) * columns;
    if (index >= frames->size() || (*frames)[index].size() != plane)
        return invalid(s.file + ": no frame " + std::to_string(s.frame) + " of the expected size");
    if (s.mask && s.mask->size() != plane) return invalid(s.file + ": the mask does not match the slice");
    const std::vector<float>& pixels = (*frames)[index];
    auto [low, high] = s.window_given ? std::pair{s.window_low, s.window_high} : foreground_window(pixels.data(), plane);
    RenderInput in;
    in.pixels = pixels.data();
    in.mask = s.mask ? s.mask->data() : nullptr;
    in.rows = rows;
    in.columns = columns;
    in.window_low = low;
    in.window_high = high;
    return render_slice(in);
}

core::Result<RgbImage> read_rgb_instance(const std::string& file) {
    DcmFileFormat ff;
    if (OFCondition c = ff.loadFile(file.c_str()); c.bad()) return invalid(file + ": " + c.text());
    DcmDataset& ds = *ff.getDataset();
    if (ds.chooseRepresentation(EXS_LittleEndianExplicit, nullptr).bad())
        return invalid(file + ": pixel data cannot be decompressed");
    Uint16 spp = 0, bits = 0, planar = 0, rows = 0, columns = 0;
    ds.findAndGetUint16(DCM_SamplesPerPixel, spp);
    ds.findAndGetUint16(DCM_BitsAllocated, bits);
    ds.findAndGetUint16(DCM_PlanarConfiguration, planar);
    ds.findAndGetUint16(DCM_Rows, rows);
    ds.findAndGetUint16(DCM_Columns, columns);
    OFString photometric;
    ds.findAndGetOFString(DCM_PhotometricInterpretation, photometric);
    if (spp != 3 || bits != 8 || planar != 0 || photometric != "RGB" || rows == 0 || columns == 0)
        return invalid(file + ": not an 8-bit interleaved RGB image");
    const Uint8* data = nullptr;
    unsigned long count = 0;
    const size_t bytes = static_cast<size_t>(rows) * columns * 3;
    if (ds.findAndGetUint8Array(DCM_PixelData, data, &count).bad() || !data || count < bytes)
        return invalid(file + ": pixel data too short");
    RgbImage img;
    img.rows = rows;
    img.columns = columns;
    img.rgb.assign(data, data + bytes);
    return img;
}

}  // namespace triage::dicom_io
