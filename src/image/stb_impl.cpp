// stb's decoders and PNG writer, compiled from the headers: for builds from
// the folder of scripts/pack-device-deps.sh (Debian's libstb has them
// compiled already). Only in such builds: see CMakeLists.txt.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_write.h>
