"""inferlab.serving"""
