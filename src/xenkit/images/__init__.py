"""Boot media: the SD card image with its FAT and ext4 partitions."""
