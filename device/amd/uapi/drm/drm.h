// Stand-in for the kernel's <drm/drm.h>, which <linux/kfd_ioctl.h> includes for its
// integer types and ioctl macros. Debian 12's linux-libc-dev ships kfd_ioctl.h but leaves
// the drm headers to libdrm-dev, which installs them elsewhere; this folder is on the
// device library's include path so that kfd_ioctl.h compiles either way (a real
// <drm/drm.h>, when there is one, is used instead).
#pragma once
#if __has_include_next(<drm/drm.h>)
#include_next <drm/drm.h>
#else
#include <linux/ioctl.h>
#include <linux/types.h>
#endif
