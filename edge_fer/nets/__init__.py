"""Small, export-ready nets: the MobileNetV2 student and the VGG/ResNet teachers."""

from edge_fer.nets.mobilenetv2 import MobileNetV2, StudentArch, student_arch
from edge_fer.nets.resnet import ResNet18
from edge_fer.nets.vgg import FaceVGG

__all__ = ["FaceVGG", "MobileNetV2", "ResNet18", "StudentArch", "student_arch"]
