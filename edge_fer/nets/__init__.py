"""Small, export-ready nets: the MobileNetV2 student and the ResNet teacher."""

from edge_fer.nets.mobilenetv2 import MobileNetV2, StudentArch, student_arch
from edge_fer.nets.resnet import ResNet18

__all__ = ["MobileNetV2", "ResNet18", "StudentArch", "student_arch"]
